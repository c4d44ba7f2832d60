"""Gemma 3 270M as the judge: its verdict is read into a valid score and recorded. (What it
decides is not asserted: a 270M base model's judgement is no fixed fact.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.engine.manager import ModelManager
from hearth.evals import EvalOptions, run_eval
from hearth.evals.cases import parse_case
from hearth.store import Store


@pytest.mark.gemma
def test_gemma_judges_a_trivial_case(gemma_eval_home: Path) -> None:
    settings = Settings.from_env({"HEARTH_HOME": str(gemma_eval_home), "HEARTH_THREADS": "2"})
    case = parse_case(
        1,
        {
            "id": "sum",
            "prompt": "2 + 2 =",
            "expected": "4",
            "scorers": ["judge", {"type": "judge", "name": "graded", "scale": "1-5"}],
        },
    )
    store = Store(settings)
    with ModelManager(store, replace(settings, max_seqs=1, cache_seqs=0)) as manager:
        (model,) = run_eval(
            manager, ["gemma3:270m"], [case], EvalOptions(max_tokens=4, judge="gemma3:270m")
        )
    (result,) = model.cases
    pass_fail, graded = result.judge_replies
    assert (pass_fail.scorer, graded.scorer) == (0, 1)
    assert pass_fail.error is None and pass_fail.text in ("PASS", "FAIL")
    assert graded.error is None and graded.text in ("1", "2", "3", "4", "5")
    first, second = result.scores
    assert first.scorer == "judge" and first.value == (1.0 if first.passed else 0.0)
    assert first.detail == f"verdict {pass_fail.text}"
    assert second.scorer == "graded" and second.value == float(graded.text)
    assert second.passed == (second.value >= 4)
    assert model.pass_rates()["graded"].total == 1
