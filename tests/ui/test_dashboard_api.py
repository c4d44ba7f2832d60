"""The dashboard's server side through a real server: sessions, CSRF, headers, panels, keys,
the playground stream, and 1,000 keys."""

from __future__ import annotations

import json
import time

import httpx
import openai

from hearth.server.ui import CONTENT_SECURITY_POLICY
from hearth.server.ui.sessions import COOKIE
from tests.ui.conftest import CHAT_MODEL, Dashboard, login


def test_without_a_session_only_the_login_page_is_served(dashboard: Dashboard) -> None:
    page = httpx.get(f"{dashboard.url}/ui/")
    assert page.status_code == 200
    assert 'id="login-form"' in page.text and 'id="nav"' not in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    for path in ("/ui/api/overview", "/ui/api/keys", "/ui/api/models", "/ui/api/session"):
        assert httpx.get(f"{dashboard.url}{path}").status_code == 401, path
    forged = httpx.get(f"{dashboard.url}/ui/api/keys", cookies={COOKIE: "made-up"})
    assert forged.status_code == 401
    # An ordinary API key is no way in either: not as a bearer token, not at the login.
    bearer = {"authorization": f"Bearer {dashboard.admin_secret}"}
    assert httpx.get(f"{dashboard.url}/ui/api/keys", headers=bearer).status_code == 401
    refused = httpx.post(f"{dashboard.url}/ui/api/login", json={"key": dashboard.user_secret})
    assert refused.status_code == 403 and "not an admin key" in refused.text
    assert httpx.post(f"{dashboard.url}/ui/api/login", json={"key": "hth_x"}).status_code == 401


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(dashboard: Dashboard) -> None:
    with login(dashboard) as (client, _):
        cookie = client.post("/ui/api/login", json={"key": dashboard.admin_secret})
        csrf = cookie.json()["csrf"]  # this second login's session
        header = cookie.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "path=/ui" in header
        assert "secure" not in header  # plain http on loopback; https adds Secure
        assert dashboard.admin_secret not in cookie.text  # the key never comes back
        page = client.get("/ui/")
        assert 'id="nav"' in page.text
        assert client.get("/ui/api/session").json()["name"] == "root-admin"
        assert client.post("/ui/api/logout", headers={"x-csrf-token": csrf}).status_code == 204
        # (the client dropped the cookie; send the old one again: the server forgot it)
        old = cookie.cookies[COOKIE]
        gone = httpx.get(f"{dashboard.url}/ui/api/session", cookies={COOKIE: old})
        assert gone.status_code == 401


def test_state_changes_need_the_csrf_token_and_this_origin(dashboard: Dashboard) -> None:
    with login(dashboard) as (client, csrf):
        body = {"name": "csrf-victim"}
        assert client.post("/ui/api/keys", json=body).status_code == 403
        wrong = client.post("/ui/api/keys", json=body, headers={"x-csrf-token": "nope"})
        assert wrong.status_code == 403 and "CSRF" in wrong.text
        cross = client.post(
            "/ui/api/keys",
            json=body,
            headers={"x-csrf-token": csrf, "origin": "https://evil.example"},
        )
        assert cross.status_code == 403 and "cross-origin" in cross.text
        assert client.delete("/ui/api/keys/app-user").status_code == 403
        assert client.post("/ui/api/logout").status_code == 403
        assert client.post("/ui/api/chat", json={}).status_code == 403
        names = [k["name"] for k in client.get("/ui/api/keys?q=csrf").json()["keys"]]
        assert names == []
        form = client.post(
            "/ui/api/login",
            content=f"key={dashboard.admin_secret}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code in (400, 422)


def test_revoking_the_admin_key_ends_its_sessions(dashboard: Dashboard) -> None:
    secret = dashboard.keys.create("short-admin", models=None, expires=None, admin=True).secret
    with login(dashboard, secret) as (client, _):
        assert client.get("/ui/api/session").status_code == 200
        dashboard.keys.revoke("short-admin")
        assert client.get("/ui/api/session").status_code == 401
        assert 'id="login-form"' in client.get("/ui/").text


def test_usage_appears_in_overview_and_per_key_and_team(dashboard: Dashboard) -> None:
    with openai.OpenAI(
        base_url=f"{dashboard.url}/v1", api_key=dashboard.user_secret, max_retries=0
    ) as api:
        for _ in range(2):
            api.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=3,
                logit_bias={"2": -100},  # the tiny model's </s>: every answer makes its 3 tokens
            )
    with login(dashboard) as (client, _):
        overview = client.get("/ui/api/overview?window=1h").json()
        assert overview["totals"]["requests"] >= 2
        assert overview["totals"]["completion_tokens"] >= 6
        assert overview["latency_ms"]["p50"] > 0 and overview["latency_ms"]["p95"] > 0
        assert sum(overview["series"]["requests"]) == overview["totals"]["requests"]
        by_key = {r["group"]: r for r in client.get("/ui/api/usage?by=key").json()["rows"]}
        assert by_key["app-user"]["requests"] >= 2
        by_team = {r["group"]: r for r in client.get("/ui/api/usage?by=team").json()["rows"]}
        assert by_team["search"]["completion_tokens"] >= 6
        assert client.get("/ui/api/quotas").json()["configured"] is False
        assert client.get("/ui/api/safety").json()["configured"] is False
        models = client.get("/ui/api/models").json()
        loaded = {m["name"]: m for m in models["loaded"]}
        assert loaded[CHAT_MODEL]["memory"]["total"] > 0
        assert CHAT_MODEL in {m["name"] for m in models["store"]}
        licenses = client.get("/ui/api/licenses").json()
        assert {m["model"] for m in licenses["models"]} >= {CHAT_MODEL}
        gauges = {g["name"] for g in client.get("/ui/api/engine").json()["gauges"]}
        assert "hearth_loaded_models" in gauges
        assert not any(name.endswith("_created") for name in gauges)
        assert client.get("/ui/api/overview?window=2y").status_code == 400


def test_playground_streams_a_chat_in_the_session_keys_name(dashboard: Dashboard) -> None:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4,
    }
    with (
        login(dashboard) as (client, csrf),
        client.stream("POST", "/ui/api/chat", json=body, headers={"x-csrf-token": csrf}) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    with login(dashboard) as (client, _):
        rows = {r["group"]: r for r in client.get("/ui/api/usage?by=key").json()["rows"]}
        assert rows["root-admin"]["completion_tokens"] >= 4


def test_create_then_revoke_a_key(dashboard: Dashboard) -> None:
    with login(dashboard) as (client, csrf):
        headers = {"x-csrf-token": csrf}
        made = client.post(
            "/ui/api/keys",
            json={"name": "made-in-ui", "team": "ui", "models": [CHAT_MODEL], "expires": "30d"},
            headers=headers,
        )
        assert made.status_code == 200, made.text
        secret = made.json()["secret"]
        assert made.json()["key"]["models"] == [CHAT_MODEL] and made.json()["key"]["expires"]
        assert httpx.get(
            f"{dashboard.url}/v1/models", headers={"authorization": f"Bearer {secret}"}
        ).is_success
        listed = client.get("/ui/api/keys?q=made-in").json()["keys"]
        assert listed[0]["name"] == "made-in-ui" and "secret" not in listed[0]
        duplicate = client.post("/ui/api/keys", json={"name": "made-in-ui"}, headers=headers)
        assert duplicate.status_code == 400
        bad = client.post("/ui/api/keys", json={"name": "<script>"}, headers=headers)
        assert bad.status_code == 400
        revoked = client.delete("/ui/api/keys/made-in-ui", headers=headers)
        assert revoked.json()["key"]["status"] == "revoked"
        assert (
            httpx.get(
                f"{dashboard.url}/v1/models", headers={"authorization": f"Bearer {secret}"}
            ).status_code
            == 401
        )


def test_a_thousand_keys_page_quickly(dashboard: Dashboard) -> None:
    for index in range(1000):
        dashboard.keys.create(f"bulk-{index:04d}", models=None, expires=None, team="bulk")
    with login(dashboard) as (client, _):
        started = time.perf_counter()
        page = client.get("/ui/api/keys?offset=50&limit=50").json()
        elapsed = time.perf_counter() - started
        assert page["total"] >= 1000 and len(page["keys"]) == 50
        assert elapsed < 1.0, f"a page of keys took {elapsed:.2f} s"
        found = client.get("/ui/api/keys?q=bulk-0999").json()
        assert [k["name"] for k in found["keys"]] == ["bulk-0999"]
        assert client.get("/ui/api/keys?limit=1000").status_code == 400
