"""``hearth eval``: compare models on an organisation's own test set (docs/EVAL.md).

``cases`` reads and validates the test set, ``scorers`` and ``judge`` decide whether an answer
passes, ``runner`` answers every case with every model through the engine, ``results`` holds
what was found (speed, cost, JSON), ``report`` draws the tables.
"""

from hearth.evals.cases import EvalCase, load_cases
from hearth.evals.results import CaseResult, EvalRun, ModelResult, PassRate, cost_per_million
from hearth.evals.runner import EvalOptions, check_judge, check_models, run_eval
from hearth.evals.scorers import Score, parse_scorer

__all__ = [
    "CaseResult",
    "EvalCase",
    "EvalOptions",
    "EvalRun",
    "ModelResult",
    "PassRate",
    "Score",
    "check_judge",
    "check_models",
    "cost_per_million",
    "load_cases",
    "parse_scorer",
    "run_eval",
]
