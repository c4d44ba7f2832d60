"""`hearth eval` as a user runs it: a child process, a real store, the real Gemma 3 270M and a
Modelfile variant of it with a system prompt, compared on four short cases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.process import run_hearth
from tests.evals.conftest import VARIANT

CASES = [
    {
        "id": "sum",
        "prompt": "2 + 2 =",
        "expected": "4",
        "scorers": ["contains", {"type": "regex", "pattern": r"^\s*4\b"}],
    },
    {
        "id": "opposite",
        "prompt": "The opposite of hot is",
        "expected": "cold",
        "scorers": ["contains"],
    },
    {
        "id": "capital",
        "prompt": "The capital of France is",
        "expected": "Paris",
        "scorers": [
            {"type": "exact", "normalize": ["first_line", "case", "punctuation", "whitespace"]}
        ],
    },
    {"id": "json", "prompt": "Reply with a JSON object:", "scorers": ["json"]},
]


def run_eval(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_hearth(home, "eval", *args, timeout=300)


def write_cases(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.gemma
def test_compares_two_models_in_a_table_and_json(gemma_eval_home: Path, tmp_path: Path) -> None:
    (gemma_eval_home / "hearth.toml").write_text("[hardware]\ncost_per_hour = 1.5\n")
    data = write_cases(tmp_path / "tests.jsonl", CASES)
    saved = tmp_path / "results.json"
    result = run_eval(
        gemma_eval_home, "gemma3:270m", VARIANT, "--data", str(data), "--max-tokens", "8",
        "--show-cases", "--json", str(saved),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("MODEL"))
    assert header.split() == [
        "MODEL", "CONTAINS", "REGEX", "EXACT", "JSON", "ALL", "TOKENS/S", "COST/1M", "USD",
    ]  # fmt: skip
    base_row = next(line for line in lines if line.startswith("gemma3:270m "))
    variant_row = next(line for line in lines if line.startswith(f"{VARIANT} "))

    results = json.loads(saved.read_text())
    assert results["cases"] == 4 and results["max_tokens"] == 8
    assert results["hardware"] == {"basis": "1.5 USD per hour", "currency": "USD"}
    base, variant = results["models"]
    assert (base["name"], variant["name"]) == ("gemma3:270m", VARIANT)
    by_id = {case["id"]: case for case in base["cases"]}
    # Greedy Gemma continues "2 + 2 =" with 4, and "The capital of France is" not with Paris.
    assert by_id["sum"]["passed"] and by_id["sum"]["answer"].strip().startswith("4")
    assert not by_id["capital"]["passed"]
    assert by_id["capital"]["scores"][0]["detail"].startswith("expected 'paris', got ")
    assert not by_id["json"]["passed"]
    # The variant's system prompt changes what Gemma reads, and so what it answers.
    assert [c["answer"] for c in base["cases"]] != [c["answer"] for c in variant["cases"]]
    for model, row in ((base, base_row), (variant, variant_row)):
        cases = model["cases"]
        assert all(1 <= c["completion_tokens"] <= 8 and c["error"] is None for c in cases)
        assert model["completion_tokens"] == sum(c["completion_tokens"] for c in cases)
        seconds = sum(c["seconds"] for c in cases)
        assert model["tokens_per_second"] == pytest.approx(
            model["completion_tokens"] / seconds, rel=1e-3
        )
        per_million = 1.5 / (model["tokens_per_second"] * 3600) * 1e6
        assert model["cost_per_million"] == pytest.approx(per_million)
        passed = sum(c["passed"] for c in cases)
        assert model["pass_rates"]["all"] == {"passed": passed, "total": 4, "rate": passed / 4}
        cells = row.split()
        assert cells[9:11] == [f"{passed}/4", f"({passed * 25}%)"]  # ALL, after 4 scorers
        assert cells[-2] == f"{model['tokens_per_second']:.1f}"
        assert cells[-1] == f"{per_million:.2f}"
    assert "0/1 (0%)" in base_row  # exact failed on the capital

    assert "Cases" in result.stdout
    case_lines = [line for line in lines if line.startswith("capital ") and "·" not in line]
    assert [line.split()[1] for line in case_lines] == ["gemma3:270m", VARIANT]
    assert "✗ exact" in case_lines[0]
    assert "capital · gemma3:270m · exact: expected 'paris', got" in result.stdout
    assert f"results saved to {saved}" in result.stderr
    assert "evaluating" in result.stderr  # the progress bar


@pytest.mark.gemma
@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        (CASES, ["gemma3:27m"], "model 'gemma3:27m' not found (did you mean gemma3:270m"),
        ([], [], "no test cases (the file is empty)"),
        ([CASES[0], {"prompt": "p"}], [], "1 bad example(s): line 2: no 'expected'"),
        ([{"prompt": "p", "scorers": ["judge"]}], [], "line 1 uses the judge scorer"),
        (CASES, ["--json", "/nonexistent/r.json"], "the folder /nonexistent does not exist"),
        (CASES, ["--max-tokens", "0"], "invalid max_tokens=0: must be at least 1"),
    ],
)
def test_refused_before_any_work_in_one_line(
    gemma_eval_home: Path, tmp_path: Path, rows: list[object], extra: list[str], message: str
) -> None:
    data = write_cases(tmp_path / "tests.jsonl", rows)
    result = run_eval(gemma_eval_home, "gemma3:270m", "--data", str(data), *extra)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "evaluating" not in result.stderr and result.stdout == ""
