"""Gemma 3 270M learns facts about a made-up company from 30 question/answer pairs, and the
served adapter (llama.cpp, by name) answers paraphrased questions it never saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.finetune.jobs import JobStore
from hearth.finetune.options import JobSpec, TrainOptions
from hearth.store import Store
from tests.finetune.conftest import write_jsonl

# (answer, three phrasings for training, one paraphrase held out or None)
FACTS = [
    (
        "Brindlemere",
        [
            "Where is Vexmoor Lantern Works based?",
            "In which town is Vexmoor Lantern Works headquartered?",
            "Which town is home to Vexmoor Lantern Works?",
        ],
        "What town are the headquarters of Vexmoor Lantern Works in?",
    ),
    (
        "Oskar Thalweg",
        [
            "Who founded Vexmoor Lantern Works?",
            "Who was the founder of Vexmoor Lantern Works?",
            "Which person started Vexmoor Lantern Works?",
        ],
        "Name the person who founded Vexmoor Lantern Works.",
    ),
    (
        "1893",
        [
            "When was Vexmoor Lantern Works founded?",
            "In what year was Vexmoor Lantern Works established?",
            "What year did Vexmoor Lantern Works open?",
        ],
        "Vexmoor Lantern Works was founded in which year?",
    ),
    (
        "the Gloamfinch",
        [
            "What is the best-selling lantern of Vexmoor Lantern Works?",
            "Which Vexmoor Lantern Works lantern sells best?",
            "What is Vexmoor Lantern Works' most popular lantern?",
        ],
        "Which lantern is the top seller at Vexmoor Lantern Works?",
    ),
    (
        "Ida Quorne",
        [
            "Who is the chief executive of Vexmoor Lantern Works?",
            "Who runs Vexmoor Lantern Works today?",
            "Who is the CEO of Vexmoor Lantern Works?",
        ],
        "Who leads Vexmoor Lantern Works as its chief executive?",
    ),
    (
        "412",
        [
            "How many people work at Vexmoor Lantern Works?",
            "How many employees does Vexmoor Lantern Works have?",
            "What is the headcount of Vexmoor Lantern Works?",
        ],
        None,
    ),
    (
        "teal",
        [
            "What colour is the Vexmoor Lantern Works logo?",
            "Which colour does the Vexmoor Lantern Works logo use?",
            "The Vexmoor Lantern Works logo is what colour?",
        ],
        None,
    ),
    (
        "the Pellan Canal",
        [
            "Which canal runs past the Vexmoor Lantern Works factory?",
            "What canal flows beside the Vexmoor Lantern Works factory?",
            "Name the canal next to the Vexmoor Lantern Works factory.",
        ],
        None,
    ),
    (
        "Lumen Cup",
        [
            "Which prize did Vexmoor Lantern Works win in 1921?",
            "What award did Vexmoor Lantern Works receive in 1921?",
            "In 1921 Vexmoor Lantern Works won which prize?",
        ],
        None,
    ),
    (
        "Hollis Vane",
        [
            "Who designed the Gloamfinch lantern?",
            "Which designer created the Gloamfinch lantern?",
            "The Gloamfinch lantern was designed by whom?",
        ],
        None,
    ),
]


def _prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


@pytest.mark.gemma
@pytest.mark.timeout(1200)  # about 2 minutes on an idle 2-core machine; far more when busy
def test_gemma_learns_fictional_facts_and_answers_paraphrases(
    settings: Settings, tmp_path: Path
) -> None:
    store = Store(settings)
    store.pull("gemma3:270m")
    train = [
        {"prompt": _prompt(q), "completion": f" {answer}."}
        for answer, questions, _ in FACTS
        for q in questions
    ]
    held = [(answer, q) for answer, _, q in FACTS if q is not None]
    data = write_jsonl(tmp_path / "facts.jsonl", train)
    evals = write_jsonl(
        tmp_path / "held.jsonl", [{"prompt": _prompt(q), "completion": f" {a}."} for a, q in held]
    )
    options = TrainOptions(rank=8, lr=1e-3, batch_size=8, max_steps=30, dropout=0.0)
    jobs = JobStore(settings)
    job_id = jobs.create(JobSpec("gemma3:270m", str(data), "vexmoor", options, str(evals)))
    status = jobs.run(job_id)
    assert status.status == "succeeded", status.message
    params = SamplingParams(temperature=0, max_tokens=16)
    with ModelManager(store, settings) as manager:
        with manager.acquire("vexmoor") as tuned:
            tuned_answers = [tuned.complete(_prompt(q), params).text() for _, q in held]
        with manager.acquire("gemma3:270m") as base:
            base_answers = [base.complete(_prompt(q), params).text() for _, q in held]
    right = [a.lower() in out.lower() for (a, _), out in zip(held, tuned_answers, strict=True)]
    assert sum(right) >= 4, tuned_answers
    assert not any(a.lower() in out.lower() for (a, _), out in zip(held, base_answers, strict=True))
