"""The dashboard in real Chromium (Debian's /usr/bin/chromium driven by Playwright): log in,
usage appearing, a streamed playground chat, creating and revoking a key, XSS attempts shown
as text, CSRF refused, no session → login page only. Screenshots go to tests/ui/artifacts/."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from tests.ui.conftest import CHAT_MODEL, ODD_MODEL, Dashboard

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not CHROMIUM.exists():
    pytest.skip("Debian chromium missing (scripts/install_system_deps.sh)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def problems() -> list[str]:
    """Script errors and CSP violations the page reports (a test may expect some)."""
    return []


@pytest.fixture
def page(
    browser: sync_api.Browser, problems: list[str], request: pytest.FixtureRequest
) -> Iterator[sync_api.Page]:
    """A fresh browser profile; fails the test if any dialog opens or the page logs a CSP
    violation or a script error; a screenshot at the end."""
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert problems == [], problems


def log_in(page: sync_api.Page, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/ui/")
    page.get_by_label("Admin API key").fill(dashboard.admin_secret)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#who:text('root-admin')")


def test_without_a_session_only_the_login_page_shows(
    page: sync_api.Page, dashboard: Dashboard
) -> None:
    page.goto(f"{dashboard.url}/ui/#keys")
    assert page.locator("#login-form").is_visible()
    assert page.locator("#nav").count() == 0
    page.get_by_label("Admin API key").fill(dashboard.user_secret)
    page.get_by_role("button", name="Log in").click()
    sync_api.expect(page.locator("#login-error")).to_contain_text("not an admin key")
    assert page.evaluate("document.cookie") == ""


def test_log_in_and_see_usage_appear(page: sync_api.Page, dashboard: Dashboard) -> None:
    log_in(page, dashboard)
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    requests_card = page.locator(".card", has_text="Requests").locator("dd")
    before = int(requests_card.inner_text().replace(",", ""))
    with openai.OpenAI(
        base_url=f"{dashboard.url}/v1", api_key=dashboard.user_secret, max_retries=0
    ) as api:
        for _ in range(3):
            api.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
    page.get_by_role("button", name="Refresh").click()
    sync_api.expect(requests_card).to_have_text(f"{before + 3:,}")
    assert page.locator("#chart-requests svg rect.bar").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
    page.get_by_role("link", name="Usage").click()
    sync_api.expect(page.locator("#usage-table tbody")).to_contain_text("app-user")
    page.get_by_label("Group by").select_option("team")
    sync_api.expect(page.locator("#usage-table tbody")).to_contain_text("search")
    sync_api.expect(page.locator("#quotas")).to_contain_text("Not configured")
    page.get_by_role("link", name="Loaded models").click()
    sync_api.expect(page.locator("#loaded-table tbody")).to_contain_text(CHAT_MODEL)
    page.get_by_role("link", name="Store & licenses").click()
    sync_api.expect(page.locator("#store-table tbody")).to_contain_text(ODD_MODEL)
    page.get_by_role("link", name="Safety").click()
    sync_api.expect(page.locator("#safety")).to_contain_text("Not configured")


def test_playground_streams_and_shows_markup_as_text(
    page: sync_api.Page, dashboard: Dashboard
) -> None:
    log_in(page, dashboard)
    page.get_by_role("link", name="Playground").click()
    models = page.get_by_label("Model", exact=True)
    sync_api.expect(models.locator("option", has_text=ODD_MODEL)).to_have_count(1)
    models.select_option(CHAT_MODEL)
    page.get_by_label("System prompt (optional)").fill(XSS)
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Message").fill(XSS)
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("#chat-log li.assistant[data-done='true']")
    sync_api.expect(page.locator("#chat-usage")).to_contain_text("8 completion tokens")
    user = page.locator("#chat-log li.user .content")
    assert user.inner_text() == XSS  # the characters themselves, not an element
    assert page.locator("#chat-log img, #chat-log script").count() == 0
    assert page.evaluate("window.__xss") is None
    assert page.locator("#chat-log li.assistant .content").inner_text() != ""


def test_create_and_revoke_a_key(page: sync_api.Page, dashboard: Dashboard) -> None:
    log_in(page, dashboard)
    page.get_by_role("link", name="Keys").click()
    # A name the server refuses comes back in its error message: shown as text.
    bad_name = "<img src=x onerror=alert(1)>"
    page.evaluate(  # past the form's own pattern check, as a hand-made request would be
        "name => { const f = document.getElementById('key-name');"
        " f.removeAttribute('pattern'); f.value = name; }",
        bad_name,
    )
    page.get_by_role("button", name="Create key").click()
    sync_api.expect(page.locator("#status")).to_contain_text(bad_name)
    assert page.locator("#status img, #status script").count() == 0
    page.get_by_label("Name", exact=True).fill("browser-made")
    page.get_by_label("Team").fill("qa")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret-value")
    sync_api.expect(secret).to_contain_text("hth_")
    made = secret.inner_text()
    page.get_by_role("button", name="I have stored it").click()
    assert secret.inner_text() == ""  # shown once: gone from the page
    page.get_by_label("Search").fill("browser-made")
    row = page.locator("#keys-table tbody tr", has_text="browser-made")
    sync_api.expect(row).to_contain_text("active")
    row.get_by_role("button", name="Revoke browser-made").click()
    row.get_by_role("button", name="Confirm revoking browser-made").click()
    sync_api.expect(row).to_contain_text("revoked")
    with pytest.raises(Exception, match="revoked"):
        dashboard.keys.verify(made)


def test_a_thousand_keys_page_in_the_browser(page: sync_api.Page, dashboard: Dashboard) -> None:
    for index in range(1000):
        dashboard.keys.create(f"many-{index:04d}", models=None, expires=None, team="bulk")
    log_in(page, dashboard)
    started = time.perf_counter()
    page.get_by_role("link", name="Keys").click()
    sync_api.expect(page.locator("#keys-page")).to_contain_text("1–50 of 1,00")
    first_page = time.perf_counter() - started
    assert page.locator("#keys-table tbody tr").count() == 50
    page.get_by_role("button", name="Next").click()
    sync_api.expect(page.locator("#keys-page")).to_contain_text("51–100 of")
    page.get_by_label("Search").fill("many-0007")
    sync_api.expect(page.locator("#keys-page")).to_have_text("1–1 of 1")
    assert first_page < 2.0, f"the first page of 1,000 keys took {first_page:.2f} s"


def test_csrf_without_token_or_from_another_site_is_refused(
    page: sync_api.Page, dashboard: Dashboard, problems: list[str]
) -> None:
    log_in(page, dashboard)
    status = page.evaluate(
        """async () => (await fetch('/ui/api/keys', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({name: 'no-token'})})).status"""
    )
    assert status == 403
    # A page on another port of the same host (same site, so even a SameSite=Strict cookie
    # goes along; only the Origin check stands) posts to the dashboard, by script and by form.
    answers: list[int] = []
    page.on(
        "response",
        lambda response: (
            answers.append(response.status) if "/ui/api/keys" in response.url else None
        ),
    )
    with attacker_site(dashboard.url) as evil:
        page.goto(evil)
        page.wait_for_selector("#sent", state="attached")
        page.wait_for_timeout(300)
    # Both arrived with the session cookie (else 401) and were refused for their origin.
    assert answers == [403, 403]
    names = {info.name for info in dashboard.keys.list()}
    assert "csrf-attack" not in names and "no-token" not in names
    # The refusal, posted into the attacker's frame, may not even be shown there.
    assert all("frame-ancestors" in problem for problem in problems), problems
    problems.clear()


class _Evil(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = f"""<!doctype html><body><iframe name="sink"></iframe>
<form id="f" method="POST" enctype="text/plain" target="sink"
      action="{self.target}/ui/api/keys"><input name='{{"name":"csrf-attack","x":"' value='"}}'>
</form><script>
fetch("{self.target}/ui/api/keys", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"name": "csrf-attack"}}'}}).finally(() => {{
  document.getElementById("f").submit();
  document.body.appendChild(Object.assign(document.createElement("p"), {{id: "sent"}}));
}});
</script></body>""".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class attacker_site:
    """A page on another origin whose script and form post to the dashboard."""

    def __init__(self, target: str) -> None:
        handler = type("Evil", (_Evil,), {"target": target})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_artifacts_folder_is_ignored_by_git() -> None:
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text()
    assert "tests/ui/artifacts/" in ignored
    assert shutil.which("git") is not None
