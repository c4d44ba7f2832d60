"""`hearth create -f Modelfile` and `hearth show --modelfile` in real processes."""

from __future__ import annotations

from pathlib import Path

from tests.cli.process import run_hearth


def test_create_show_and_rebuild(tmp_path: Path, tiny_model: Path) -> None:
    home = tmp_path / "home"
    assert run_hearth(home, "import", str(tiny_model), "--name", "tiny").returncode == 0
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(
        'FROM tiny\nSYSTEM """You answer\nin French."""\nPARAMETER temperature 0.3\n'
        "PARAMETER num_gpu 99\n"
    )
    created = run_hearth(home, "create", "acme/french", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    assert "created acme/french:latest" in created.stdout
    assert "ignoring parameter num_gpu" in created.stderr
    shown = run_hearth(home, "show", "acme/french")
    assert "You answer in French." in shown.stdout
    assert "temperature 0.3" in shown.stdout
    written = run_hearth(home, "show", "acme/french", "--modelfile")
    assert 'SYSTEM """You answer\nin French."""' in written.stdout
    (tmp_path / "Rebuilt").write_text(written.stdout)
    rebuilt = run_hearth(home, "create", "again", "-f", str(tmp_path / "Rebuilt"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "You answer in French." in run_hearth(home, "show", "again").stdout


def test_a_bad_modelfile_is_one_line_naming_the_line(tmp_path: Path, tiny_model: Path) -> None:
    home = tmp_path / "home"
    run_hearth(home, "import", str(tiny_model), "--name", "tiny")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM tiny\nPARAMETER temperature warm\n")
    result = run_hearth(home, "create", "bad", "-f", str(modelfile))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: Modelfile line 2: invalid temperature='warm': must be a number"
    ]
    missing = run_hearth(home, "create", "bad", "-f", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert "bad" not in run_hearth(home, "list").stdout
