"""`hearth license check`, `show --license`, and the license gate of `pull`/`import`, run as the
installed `hearth` command in a real process."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from hearth.license.acceptance import ACCEPTANCES_FILE
from tests.cli.process import run_hearth
from tests.license.licensed_gguf import write_licensed_gguf

STARTUP = """
[policy]
commercial_use = true
monthly_active_users = 50000
intended_uses = ["internal", "customer_facing"]
distribute_derivatives = false
"""
LAB = """
[policy]
commercial_use = false
intended_uses = ["research"]
"""


def import_model(home: Path, tmp_path: Path, license: str, name: str, *extra: str) -> int:
    path = write_licensed_gguf(tmp_path / f"{name.replace('/', '-')}.gguf", license)
    result = run_hearth(home, "import", str(path), "--name", name, *extra)
    return result.returncode


def test_check_exit_status_follows_the_decisions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert import_model(home, tmp_path, "apache-2.0", "acme/open") == 0
    assert import_model(home, tmp_path, "cc-by-nc-4.0", "acme/nc") == 0  # no policy yet
    (home / "hearth.toml").write_text(STARTUP)

    result = run_hearth(home, "license", "check")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert f"policy: {home / 'hearth.toml'}" == lines[0]
    assert any(
        line.startswith("acme/nc:latest: cc-by-nc-4.0, denied: commercial use not permitted")
        and "§1(i), §2(a)(1)" in line
        for line in lines
    ), result.stdout
    assert any(line.startswith("acme/open:latest: apache-2.0, allowed") for line in lines)

    assert run_hearth(home, "license", "check", "acme/open").returncode == 0

    lab = tmp_path / "lab.toml"
    lab.write_text(LAB)
    result = run_hearth(home, "license", "check", "--policy", str(lab))
    assert result.returncode == 0, result.stdout
    assert f"policy: {lab}" in result.stdout


def test_malformed_hearth_toml_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.toml").write_text("[policy]\ncommercial_use = yes\n")
    result = run_hearth(home, "license", "check")
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "hearth.toml is not valid TOML" in message and "line 2" in message

    (home / "hearth.toml").write_text("[policy]\nintended_uses = ['chatbots']\n")
    result = run_hearth(home, "license", "check")
    assert result.returncode == 1
    assert "hearth.toml: policy.intended_uses: 'chatbots' is not an intended use" in result.stderr


def test_import_refuses_unknown_terms_until_accepted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.toml").write_text(STARTUP)
    path = write_licensed_gguf(tmp_path / "eula.gguf", "acme-eula-3")

    refused = run_hearth(home, "import", str(path), "--name", "acme/eula")
    assert refused.returncode == 1
    assert "unknown (acme-eula-3), needs review" in refused.stderr
    assert "--accept-license" in refused.stderr
    assert "acme/eula" not in run_hearth(home, "list").stdout  # refused: not kept

    accepted = run_hearth(home, "import", str(path), "--name", "acme/eula", "--accept-license")
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted the unknown terms of acme/eula:latest (recorded)" in accepted.stderr
    [record] = [json.loads(line) for line in (home / ACCEPTANCES_FILE).read_text().splitlines()]
    assert record["who"] == getpass.getuser()
    assert record["model"] == "acme/eula:latest" and record["license_id"] == "unknown"
    assert record["text_digest"].startswith("sha256:") and record["at"]

    check = run_hearth(home, "license", "check", "acme/eula")
    assert check.returncode == 0, check.stdout
    assert f"accepted by {getpass.getuser()}" in check.stdout


def test_import_warns_with_obligations(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.toml").write_text(STARTUP)
    path = write_licensed_gguf(tmp_path / "llama.gguf", "llama3.1")
    result = run_hearth(home, "import", str(path), "--name", "acme/llama-x")
    assert result.returncode == 0, result.stderr
    assert "acme/llama-x:latest: llama3.1, allowed with obligations:" in result.stderr
    assert "Built with Llama" in result.stderr


def test_show_license_prints_decision_obligations_and_evidence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert import_model(home, tmp_path, "llama3.1", "acme/llama-x") == 0
    (home / "hearth.toml").write_text(STARTUP)
    result = run_hearth(home, "show", "acme/llama-x", "--license")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "license       llama3.1: Llama 3.1 Community License Agreement (2024-07-23)" in out
    assert "gguf general.license: llama3.1 (85%)" in out
    assert "decision      allowed with obligations" in out
    assert "'Built with Llama'" in out and "(§1.b.i)" in out and "(§1.b.iv)" in out
    assert "acme/llama-x:latest has no license text in the store" in out


def test_pull_of_a_denied_catalogue_model_downloads_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.toml").write_text(STARTUP + 'deny = ["gemma"]\n')
    result = run_hearth(home, "pull", "gemma3:270m")
    assert result.returncode == 1
    assert "gemma3:270m: gemma, denied: listed in deny (hearth.toml policy.deny)" in result.stderr
    assert "nothing was downloaded" in result.stderr
    assert not (home / "blobs").exists()
