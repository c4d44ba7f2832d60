"""The gate around a request: input screening, the output stream, classifier verdicts, and
the audit log on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import pytest
from sqlalchemy import Engine, select

from hearth.engine.request import RequestOutput
from hearth.engine.templates import ChatMessage
from hearth.errors import ContentFilteredError
from hearth.safety import AuditLog, SafetyConfig, SafetyService
from hearth.safety.audit import AuditRow
from hearth.safety.classifier import Verdict, parse_verdict
from hearth.safety.pipeline import Gate

TABLE = {
    "default": {"pii": "redact", "blocklist": ["forbidden"]},
    "models": {"strict-model": {"pii": {"email": "block"}}},
    "keys": {"logger": {"blocklist_action": "log", "directions": ["output"]}},
}


class Source:
    """Engine outputs for a gate to read (pure logic: no engine involved)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.closed_early = False

    async def outputs(self) -> AsyncGenerator[RequestOutput, None]:
        finished = False
        try:
            for index, piece in enumerate(self.pieces):
                finished = index == len(self.pieces) - 1
                yield RequestOutput(1, piece, (), finished, "stop" if finished else None)
        finally:
            self.closed_early = not finished


async def read(gate: Gate, source: Source) -> list[RequestOutput]:
    return await gate.collect(source.outputs())


def test_input_is_redacted_or_blocked_per_model_and_key() -> None:
    service = SafetyService(SafetyConfig.from_table(TABLE), audit=None)
    messages = [ChatMessage("user", "mail bob@example.com")]
    screened = asyncio.run(service.gate(None, "m", "/e").screen_messages(messages))
    assert screened == [ChatMessage("user", "mail [EMAIL]")]
    with pytest.raises(ContentFilteredError, match=r"'pii\.email'"):
        asyncio.run(service.gate(None, "strict-model", "/e").screen_messages(messages))
    logger = service.gate("logger", "m", "/e")  # output only: input passes untouched
    assert asyncio.run(logger.screen_messages(messages)) == messages


def test_a_blocked_output_ends_with_content_filter_and_closes_the_engine_stream() -> None:
    service = SafetyService(SafetyConfig.from_table(TABLE), audit=None)
    more = ["and more words "] * 20  # longer than the hold-back window
    source = Source(["Hello ", "there, ", "this is forb", "idden text ", *more])
    outputs = asyncio.run(read(service.gate(None, "m", "/e"), source))
    assert "".join(o.text for o in outputs) == "Hello there, this is "
    assert outputs[-1].finished and outputs[-1].finish_reason == "content_filter"
    assert source.closed_early  # the generation is aborted


def test_a_log_action_changes_nothing_but_is_counted() -> None:
    service = SafetyService(SafetyConfig.from_table(TABLE), audit=None)
    source = Source(["a forbidden ", "word"])
    outputs = asyncio.run(read(service.gate("logger", "m", "/e"), source))
    assert "".join(o.text for o in outputs) == "a forbidden word"
    assert outputs[-1].finish_reason == "stop" and not source.closed_early


def test_without_rules_the_stream_is_untouched() -> None:
    service = SafetyService(SafetyConfig.from_table({}), audit=None)
    gate = service.gate(None, "m", "/e")
    source = Source(["x"])
    stream = source.outputs()
    assert gate.outputs(stream) is stream


class Judge:
    """A classifier with a fixed verdict (pure logic; the model-backed one is tested through
    the server)."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.seen: list[list[ChatMessage]] = []

    async def classify(self, conversation: Sequence[ChatMessage]) -> Verdict:
        self.seen.append(list(conversation))
        return self.verdict


def test_an_unsafe_classifier_verdict_blocks_input_and_output() -> None:
    config = SafetyConfig.from_table({"default": {"classifier": "guard", "pii": "redact"}})
    policy = config.policy(None, "m")
    judge = Judge(Verdict(False, ("S1", "S10")))
    gate = Gate(policy, None, None, "m", "/e", judge)
    with pytest.raises(ContentFilteredError, match=r"classifier\.guard"):
        asyncio.run(gate.screen_messages([ChatMessage("user", "hi bob@example.com")]))
    assert judge.seen[0] == [ChatMessage("user", "hi [EMAIL]")]  # it judges what the model sees
    outputs = asyncio.run(read(gate, Source(["fine ", "words"])))
    assert outputs[-1].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("answer", "form", "verdict"),
    [
        ("safe", "llama-guard", Verdict(True)),
        ("unsafe\nS1,S10", "llama-guard", Verdict(False, ("S1", "S10"))),
        ("unsafe", "llama-guard", Verdict(False, ("unsafe",))),
        ("gibberish", "llama-guard", Verdict(False, ("unsafe",))),
        ("No", "shieldgemma", Verdict(True)),
        ("Yes", "shieldgemma", Verdict(False, ("policy",))),
    ],
)
def test_guard_model_answers_are_parsed(answer: str, form: str, verdict: Verdict) -> None:
    assert parse_verdict(answer, form) == verdict


def test_every_decision_is_audited_without_the_text(db_engine: Engine) -> None:
    audit = AuditLog(db_engine)
    service = SafetyService(SafetyConfig.from_table(TABLE), audit)
    gate = service.gate("app-1", "m", "/v1/chat/completions")
    asyncio.run(gate.screen_messages([ChatMessage("user", "mail bob@example.com, a@b.co")]))
    asyncio.run(read(gate, Source(["the forbidden ", "fruit"])))
    audit.close()
    with db_engine.connect() as connection:
        rows = [row._asdict() for row in connection.execute(select(AuditRow.__table__))]
    decided = {(r["direction"], r["rule"], r["action"], r["count"]) for r in rows}
    assert decided == {
        ("input", "pii.email", "redact", 2),
        ("output", "blocklist", "block", 1),
    }
    assert all(r["key_name"] == "app-1" and r["model"] == "m" for r in rows)
    assert all(r["endpoint"] == "/v1/chat/completions" and r["created"] for r in rows)
    flat = " ".join(str(value) for row in rows for value in row.values())
    assert "bob@" not in flat and "forbidden" not in flat and "fruit" not in flat
