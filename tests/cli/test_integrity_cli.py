"""`hearth verify`, `gc`, `export` and `import bundle.tar` on real stores; a real full disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hearth.cli import integrity_cmds, store_cmds
from hearth.cli.console import cli_errors
from hearth.config import Settings
from hearth.store import Store
from tests.cli.process import HEARTH, hearth_env

# The commands as main.py registers them (see the report for the lines).
app = typer.Typer()
app.command("verify")(cli_errors(integrity_cmds.verify_models))
app.command("gc")(cli_errors(integrity_cmds.gc))
app.command("export")(cli_errors(integrity_cmds.export))
app.command("import")(cli_errors(store_cmds.import_model))

runner = CliRunner()


def hearth(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[2000] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def store(hearth_home: Path) -> Store:
    return Store(Settings.from_env({"HEARTH_HOME": str(hearth_home)}))


def test_verify_reports_damage_and_exit_status(store: Store, tiny_model: Path) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    code, stdout, _ = hearth("verify")
    assert code == 0 and "verified 1 models" in stdout and "no damage" in stdout

    flip_byte(model.model_path)
    code, stdout, stderr = hearth("verify", "tiny")
    assert code == 1
    lines = stdout.splitlines()
    assert lines[0].split() == ["MODEL", "LAYER", "DIGEST", "PROBLEM"]
    digest = model.manifest.layers[0].digest
    row = ["tiny:latest", "application/vnd.hearth.model.gguf", digest, "digest", "mismatch"]
    assert lines[1].split() == row
    assert "1 blob damaged; run hearth verify --repair" in stderr

    code, stdout, stderr = hearth("verify", "--repair")
    assert code == 1
    assert "cannot repair tiny:latest: source 'file:tiny.gguf' cannot be pulled again" in stdout
    assert "could not be repaired" in stderr


def test_gc_dry_run_then_delete(store: Store, tiny_model: Path) -> None:
    store.import_gguf(tiny_model, "tiny")
    orphan = store.blobs.write_bytes(b"x" * 2000)
    name = store.blobs.path(orphan.digest).name
    code, stdout, _ = hearth("gc", "--dry-run")
    assert code == 0
    assert f"would delete unreferenced blob {name} (2.0 KiB)" in stdout
    assert "would free 2.0 KiB (1 files)" in stdout
    assert store.blobs.has(orphan.digest)
    code, stdout, _ = hearth("gc")
    assert code == 0 and "freed 2.0 KiB (1 files)" in stdout
    assert not store.blobs.has(orphan.digest)
    assert hearth("gc")[1].strip() == "freed 0 B (0 files)"


def test_export_then_import_into_a_fresh_home(
    store: Store, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    bundle = tmp_path / "bundle.tar"
    code, stdout, _ = hearth("export", "tiny", "-o", str(bundle))
    assert code == 0 and f"exported tiny:latest to {bundle}" in stdout

    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("HEARTH_HOME", str(fresh))
    code, stdout, stderr = hearth("import", str(bundle))
    assert code == 0, stderr
    assert f"imported tiny:latest (426.4 KiB, id {model.short_id})" in stdout
    assert "license: apache-2.0 (read it: hearth show --license tiny:latest)" in stdout
    imported = Store(Settings.from_env({"HEARTH_HOME": str(fresh)})).resolve("tiny")
    assert imported.manifest_digest == model.manifest_digest

    code, _, stderr = hearth("import", str(tiny_model))
    assert code == 1 and "--name is required" in stderr


def test_import_of_a_corrupt_bundle_says_digest_mismatch(
    store: Store, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_gguf(tiny_model, "tiny")
    bundle = tmp_path / "bundle.tar"
    assert hearth("export", "tiny", "-o", str(bundle))[0] == 0
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the model blob, the bundle's bulk
    bundle.write_bytes(bytes(data))
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("HEARTH_HOME", str(fresh))
    code, _, stderr = hearth("import", str(bundle))
    assert code == 1 and "digest mismatch" in stderr and "nothing was imported" in stderr
    assert Store(Settings.from_env({"HEARTH_HOME": str(fresh)})).list() == []


CHECK_FULL_DISK = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path
    from hearth.config import Settings
    from hearth.engine.llm import LLM, EngineConfig
    from hearth.engine.sampling import SamplingParams
    from hearth.store import Store

    hearth, home, tiny = sys.argv[1:4]
    run = lambda *args: subprocess.run([hearth, *args], capture_output=True, text=True)
    first = run("import", tiny, "--name", "tiny")
    second = run(*sys.argv[4:])
    store = Store(Settings.from_env({"HEARTH_HOME": home}))
    model = store.resolve("tiny")
    with LLM(model.model_path, EngineConfig(context=64, threads=2)) as llm:
        tokens = [o for o in llm.complete("hi", SamplingParams(temperature=0, max_tokens=2))]
    print(json.dumps({
        "first": first.returncode, "second": second.returncode, "stderr": second.stderr,
        "models": [str(m.name) for m in store.list()],
        "blob_files": sorted(p.name for p in Path(home, "blobs").iterdir()),
        "referenced": sorted(d.replace(":", "-") for d in model.manifest.digests()),
        "generated": len(tokens),
    }))
    """
)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("bundle", "no space left on the device while importing the bundle"),
        ("gguf", "no space left on the device"),
    ],
)
def test_full_disk_during_import(
    tmp_path: Path, tiny_model: Path, tiny_chat_model: Path, second: str, message: str
) -> None:
    """A real full filesystem: a 700 KiB tmpfs (mounted in a user namespace) holds one tiny
    model; importing a second one (in a bundle, or a GGUF file) fails cleanly."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged mount namespaces are not allowed here: {probe.stderr!r}")
    source = Store(Settings.from_env({"HEARTH_HOME": str(tmp_path / "source")}))
    source.import_gguf(tiny_chat_model, "chat")
    bundle = tmp_path / "chat.tar"
    integrity_cmds.export_bundle(source, ["chat"], bundle)
    home = tmp_path / "small-home"
    home.mkdir()
    script = tmp_path / "check.py"
    script.write_text(CHECK_FULL_DISK)
    mount = 'mount -t tmpfs -o size=700k tmpfs "$1" && shift && exec "$@"'
    command = ["unshare", "-Urm", "sh", "-c", mount, "sh", str(home)]
    command += [sys.executable, str(script), HEARTH, str(home), str(tiny_model)]
    command += ["import", str(bundle)] if second == "bundle" else []
    command += ["import", str(tiny_chat_model), "--name", "chat"] if second == "gguf" else []
    result = subprocess.run(
        command, env=hearth_env(home), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["first"] == 0
    assert report["second"] == 1
    assert message in report["stderr"]
    assert "Traceback" not in report["stderr"]
    assert report["models"] == ["tiny:latest"]
    assert report["blob_files"] == report["referenced"]  # no temp file, no stray blob
    assert report["generated"] >= 1
