"""The safety pipeline through a real server, with the official openai, ollama and anthropic
clients, on SQLite and on PostgreSQL (``server_database_url``).

How the tests see what the model saw and make it say what they need:
- the tiny test model's vocabulary is bytes, so ``prompt_tokens`` counts the prompt's bytes: a
  redacted prompt has exactly the token count of the same prompt with the placeholder typed in;
- a JSON schema ``const`` in ``response_format`` (or Ollama's ``format``) forces the model's
  answer, so a blocklisted word or an email appears at a known place in a real stream;
- the classifier is a copy of the tiny model, run through the server's own model manager: its
  verdict is arbitrary but deterministic (greedy, constrained by the verdict grammar), so the
  test first asks it for the verdict on some inputs, then checks the server acted on each.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest

from hearth.config import Settings
from hearth.db import open_database
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.engine.manager import ModelManager
from hearth.engine.templates import ChatMessage
from hearth.errors import ConfigError
from hearth.safety import AuditEvent, AuditLog
from hearth.safety.classifier import ModelClassifier, Verdict
from hearth.server.app import create_app
from hearth.server.keys import KeyStore
from hearth.store import Store
from tests.conftest import CHAT_TEMPLATE
from tests.server.live_server import live_server

CHAT = "tiny-chat"
SAFETY_TOML = """
[safety]
hold_back = 32

[safety.default]
pii = "redact"
blocklist = ["forbidden"]
patterns = { codename = 'PROJECT-[A-Z]{4}' }

[safety.keys."strict"]
pii = { email = "block" }

[safety.models."guarded"]
classifier = "guard"

[safety.models."guarded-leniently"]
classifier = "lenient-guard"
"""
FILLER = " and then some more words" * 4  # longer than the hold-back window
FORBIDDEN = "the answer is: forbidden" + FILLER
EMAIL = "write to bob@example.com" + FILLER


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path, server_database_url: str
) -> Settings:
    home = tmp_path_factory.mktemp("safety-home")
    (home / "hearth.toml").write_text(SAFETY_TOML)
    settings = Settings.from_env(
        {
            "HEARTH_HOME": str(home),
            "HEARTH_CONTEXT": "2048",
            "HEARTH_MAX_SEQS": "2",
            "HEARTH_CACHE_SEQS": "0",
            "HEARTH_THREADS": "2",
            "HEARTH_DATABASE_URL": server_database_url,
        }
    )
    store = Store(settings)
    store.import_gguf(tiny_chat_model, CHAT)
    store.copy(CHAT, "guarded")
    store.copy(CHAT, "guarded-leniently")
    store.copy(CHAT, "guard")
    spec = TinyModelSpec(name="lenient-guard", chat_template=CHAT_TEMPLATE, seed=3)
    lenient = write_tiny_gguf(tmp_path_factory.mktemp("guard") / "lenient.gguf", spec)
    store.import_gguf(lenient, "lenient-guard")
    return settings


@pytest.fixture(scope="module")
def secrets(settings: Settings) -> dict[str, str]:
    engine = open_database(settings)
    keys = KeyStore(engine)
    made = {
        name: keys.create(name, models=None, expires=None).secret for name in ("app-1", "strict")
    }
    engine.dispose()
    return made


@pytest.fixture(scope="module")
def manager(settings: Settings) -> Iterator[ModelManager]:
    with ModelManager(Store(settings), settings) as manager:
        yield manager


@pytest.fixture(scope="module")
def base_url(settings: Settings, secrets: dict[str, str], manager: ModelManager) -> Iterator[str]:
    with live_server(settings, manager) as url:
        yield url


def client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def forced(text: str) -> dict[str, Any]:
    """A response_format whose only valid answer is the JSON string ``text``."""
    schema = {"type": "string", "const": text}
    return {"type": "json_schema", "json_schema": {"name": "forced", "schema": schema}}


def prompt_tokens(chat: openai.OpenAI, content: str) -> int:
    answer = chat.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": content}], max_tokens=1
    )
    assert answer.usage is not None
    return answer.usage.prompt_tokens


def test_input_pii_is_redacted_before_the_model_sees_it(
    base_url: str, secrets: dict[str, str]
) -> None:
    with client(base_url, secrets["app-1"]) as chat:
        with_email = prompt_tokens(chat, "mail bob@example.com now")
        typed_placeholder = prompt_tokens(chat, "mail [EMAIL] now")
        same_length_no_pii = prompt_tokens(chat, "mail bobXexampleXcom now")
    assert with_email == typed_placeholder
    assert same_length_no_pii == with_email + len("bob@example.com") - len("[EMAIL]")


def test_blocked_input_is_a_400_naming_the_rule(base_url: str, secrets: dict[str, str]) -> None:
    with client(base_url, secrets["app-1"]) as chat, pytest.raises(openai.BadRequestError) as bad:
        chat.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "status of PROJECT-ABCD?"}]
        )
    error = bad.value.body
    assert isinstance(error, dict) and error["code"] == "content_filter"
    assert "'pattern.codename'" in error["message"]
    with client(base_url, secrets["strict"]) as chat, pytest.raises(openai.BadRequestError) as bad:
        chat.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "mail bob@example.com"}]
        )
    assert "'pii.email'" in str(bad.value)  # per key: this key blocks what others redact


def test_output_stream_stops_with_content_filter_before_the_word(
    base_url: str, secrets: dict[str, str]
) -> None:
    with client(base_url, secrets["app-1"]) as chat:
        stream = chat.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "say it"}],
            response_format=forced(FORBIDDEN),  # type: ignore[arg-type]
            max_tokens=200,
            stream=True,
        )
        chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "".join(deltas) == '"the answer is: '
    assert not any("forb" in d for d in deltas)
    assert reasons[-1] == "content_filter" and reasons.count("content_filter") == 1


def test_output_pii_is_redacted_as_it_streams_and_whole(
    base_url: str, secrets: dict[str, str]
) -> None:
    with client(base_url, secrets["app-1"]) as chat:
        stream = chat.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "say it"}],
            response_format=forced(EMAIL),  # type: ignore[arg-type]
            max_tokens=200,
            stream=True,
        )
        chunks = [c for c in stream if c.choices]
        whole = chat.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "say it"}],
            response_format=forced(EMAIL),  # type: ignore[arg-type]
            max_tokens=200,
        )
    expected = json.dumps(EMAIL.replace("bob@example.com", "[EMAIL]"))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert len(chunks) > 10  # it really streamed, in many pieces
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert whole.choices[0].message.content == expected


def test_ollama_chat_ends_with_done_reason_content_filter(
    base_url: str, secrets: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {secrets['app-1']}"}
    with ollama.Client(host=base_url, headers=headers) as api:
        parts = list(
            api.chat(
                model=CHAT,
                messages=[{"role": "user", "content": "say it"}],
                format={"type": "string", "const": FORBIDDEN},
                options={"num_predict": 200},
                stream=True,
            )
        )
        options = {"num_predict": 1}
        generated = api.generate(model=CHAT, prompt="mail bob@example.com", options=options)
        typed = api.generate(model=CHAT, prompt="mail [EMAIL]", options=options)
    assert "".join(p.message.content or "" for p in parts) == '"the answer is: '
    assert parts[-1].done and parts[-1].done_reason == "content_filter"
    assert generated.prompt_eval_count == typed.prompt_eval_count


def test_anthropic_refuses_blocked_input(base_url: str, secrets: dict[str, str]) -> None:
    """The Messages API has no grammar to force an answer: blocked input is a 400
    invalid_request_error naming the rule (the output path is the same gate as the others)."""
    api = anthropic.Anthropic(base_url=base_url, api_key=secrets["app-1"], max_retries=0)
    with api, pytest.raises(anthropic.BadRequestError, match="blocklist"):
        api.messages.create(
            model=CHAT, max_tokens=4, messages=[{"role": "user", "content": "a forbidden word"}]
        )


def test_anthropic_stream_stops_with_refusal(base_url: str, secrets: dict[str, str]) -> None:
    """A forced tool call (its argument a JSON schema const) puts the word in the output."""
    schema = {"type": "object", "properties": {"text": {"const": FORBIDDEN}}, "required": ["text"]}
    api = anthropic.Anthropic(base_url=base_url, api_key=secrets["app-1"], max_retries=0)
    with api:
        events = list(
            api.messages.create(
                model=CHAT,
                max_tokens=300,
                messages=[{"role": "user", "content": "say it"}],
                tools=[{"name": "say", "description": "Say it.", "input_schema": schema}],
                tool_choice={"type": "tool", "name": "say"},
                stream=True,
            )
        )
    stops = [e.delta.stop_reason for e in events if e.type == "message_delta"]
    assert stops == ["refusal"]
    assert events[-1].type == "message_stop"
    streamed = "".join(
        getattr(e.delta, "partial_json", "") or getattr(e.delta, "text", "")
        for e in events
        if e.type == "content_block_delta"
    )
    assert "forb" not in streamed


def test_responses_api_marks_a_filtered_answer_incomplete(
    base_url: str, secrets: dict[str, str]
) -> None:
    with client(base_url, secrets["app-1"]) as chat:
        response = chat.responses.create(
            model=CHAT,
            input="say it",
            max_output_tokens=200,
            text={"format": {"type": "json_schema", "name": "f", "schema": {"const": FORBIDDEN}}},
        )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output_text == '"the answer is: '


def test_the_classifier_model_decides_through_the_server(
    base_url: str, secrets: dict[str, str], manager: ModelManager
) -> None:
    """Two random tiny guard models (seeds 1 and 3) that, greedy and held to the verdict
    grammar, judge these inputs differently: the server must follow each one's verdict."""
    inputs = ["hello", "question number 1"]
    strict = [_verdict(manager, "guard", text) for text in inputs]
    lenient = [_verdict(manager, "lenient-guard", text) for text in inputs]
    assert not any(v.safe for v in strict) and all(v.safe for v in lenient)  # both paths run
    messages: Any = [{"role": "user", "content": inputs[0]}]
    with client(base_url, secrets["app-1"]) as chat:
        with pytest.raises(openai.BadRequestError, match=r"classifier\.guard") as bad:
            chat.chat.completions.create(model="guarded", messages=messages, max_tokens=1)
        assert isinstance(bad.value.body, dict) and bad.value.body["code"] == "content_filter"
        answer = chat.chat.completions.create(
            model="guarded-leniently", messages=messages, max_tokens=1
        )
    assert answer.choices[0].finish_reason in ("stop", "length")


def _verdict(manager: ModelManager, guard: str, text: str) -> Verdict:
    """The guard model's verdict, asked through the server's own model manager."""
    return asyncio.run(ModelClassifier(manager, guard).classify([ChatMessage("user", text)]))


def test_every_decision_is_in_the_audit_log_without_text(
    base_url: str, secrets: dict[str, str], settings: Settings
) -> None:
    expected = {
        ("app-1", "input", "pii.email", "redact"),
        ("app-1", "output", "pii.email", "redact"),
        ("app-1", "output", "blocklist", "block"),
        ("app-1", "input", "pattern.codename", "block"),
        ("app-1", "input", "blocklist", "block"),
        ("strict", "input", "pii.email", "block"),
        ("app-1", "input", "classifier.guard", "block"),
    }
    engine = open_database(settings)
    audit = AuditLog(engine)
    try:
        events = _wait_for(audit, expected)
    finally:
        audit.close()
        engine.dispose()
    assert expected <= {(e.key_name, e.direction, e.rule, e.action) for e in events}
    classified = [e for e in events if e.rule == "classifier.guard"]
    assert classified[0].category.startswith("S")  # the guard model's categories
    for event in events:
        assert event.model and event.endpoint.startswith(("/v1/", "/api/"))
        values = " ".join(str(v) for v in vars(event).values())
        assert "example" not in values and "forbidden" not in values
        assert "PROJECT" not in values and "answer" not in values


def _wait_for(audit: AuditLog, expected: set[tuple[Any, ...]]) -> list[AuditEvent]:
    """The audit rows once every expected decision is there (the server's writer batches)."""
    for _ in range(50):
        events = audit.events()
        if expected <= {(e.key_name, e.direction, e.rule, e.action) for e in events}:
            break
        time.sleep(0.1)
    return events


def test_a_malicious_regex_in_hearth_toml_stops_the_server_with_where(tmp_path: Path) -> None:
    (tmp_path / "hearth.toml").write_text(
        "[safety.models.\"m\"]\npatterns = { evil = '(\\w+\\s?)+$' }\n"
    )
    settings = Settings.from_env({"HEARTH_HOME": str(tmp_path)})
    with pytest.raises(ConfigError) as refused:
        create_app(settings)
    message = str(refused.value)
    assert str(tmp_path / "hearth.toml") in message and "patterns.evil" in message
    assert "nested quantifiers" in message and "\n" not in message
