"""The ingress's pure parts: what it reads from a request body, how it counts a stream's
outputs, and the error event that ends a stream whose replica died."""

from __future__ import annotations

import json

from hearth.cluster.ingress import _model_and_text, count_outputs, error_event


def test_model_and_prompt_text_of_each_api() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"content": "yo"}]}
    ollama = {"model": "m", "system": "be brief", "prompt": "why?"}

    assert _model_and_text(json.dumps(chat).encode()) == ("m", "hi\nyo")
    assert _model_and_text(json.dumps(ollama).encode()) == ("m", "be brief\nwhy?")
    assert _model_and_text(b"not json") == (None, "")
    assert _model_and_text(b'{"model": 3}') == (None, "")


def test_outputs_are_counted_per_api() -> None:
    sse = b'data: {"choices":[{"index":0,"text":"a","finish_reason":null}]}\n\n'
    ndjson = b'{"model":"m","response":"a","done":false}\n'
    anthropic = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'

    assert count_outputs("openai", sse * 3) == 3
    assert count_outputs("openai", b'data: {"choices":[],"usage":{}}\n\n') == 0
    assert count_outputs("ollama", ndjson * 2) == 2
    assert count_outputs("anthropic", anthropic) == 1


def test_error_events_in_each_api_form() -> None:
    openai = error_event("openai", "replica r1 failed").decode()
    ollama = error_event("ollama", "replica r1 failed").decode()
    anthropic = error_event("anthropic", "replica r1 failed").decode()

    first, done = openai.strip().split("\n\n")
    assert json.loads(first.removeprefix("data: "))["error"]["message"] == "replica r1 failed"
    assert done == "data: [DONE]"
    assert json.loads(ollama) == {"error": "replica r1 failed"}
    event, data = anthropic.strip().split("\n")
    assert event == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["type"] == "api_error"
