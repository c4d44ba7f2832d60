"""Modelfile parsing, parameter vocabulary and defaults, and writing a Modelfile back out."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.engine.sampling import SamplingParams
from hearth.errors import ModelfileError, ValidationError
from hearth.modelfile import parse_modelfile
from hearth.modelfile.params import apply_defaults, normalise, sampling_defaults
from hearth.modelfile.render import render_parameters
from hearth.server.ollama.convert import sampling_params
from hearth.server.ollama.schemas import Options
from hearth.server.openai.convert import chat_params
from hearth.server.openai.schemas import ChatCompletionRequest

FULL = '''# a support bot
from gemma3:270m
SYSTEM """You are terse.
Answer in one line."""
PARAMETER temperature 0.2
PARAMETER stop "<end_of_turn>"
PARAMETER stop </s>
PARAMETER num_ctx 2048
MESSAGE user """Who are you?"""
MESSAGE assistant A bot.
TEMPLATE """{% for m in messages %}{{ m.content }}{% endfor %}"""
ADAPTER ./lora.gguf
LICENSE """Apache License
Version 2.0"""
'''


def test_full_modelfile(tmp_path: Path) -> None:
    recipe = parse_modelfile(FULL, tmp_path)
    assert recipe.base == "gemma3:270m" and not recipe.base_is_path
    assert recipe.system == "You are terse.\nAnswer in one line."
    assert recipe.parameters == {
        "temperature": 0.2,
        "stop": ["<end_of_turn>", "</s>"],
        "num_ctx": 2048,
    }
    assert recipe.messages == [("user", "Who are you?"), ("assistant", "A bot.")]
    assert recipe.template == "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert recipe.adapters == [tmp_path / "lora.gguf"]
    assert recipe.licenses == ["Apache License\nVersion 2.0"]


def test_from_a_path_is_resolved_against_the_modelfile(tmp_path: Path) -> None:
    recipe = parse_modelfile("FROM ./weights/model.gguf\n", tmp_path)
    assert recipe.base_is_path and recipe.base == str(tmp_path / "weights" / "model.gguf")


def test_quoted_values_keep_escaped_quotes(tmp_path: Path) -> None:
    recipe = parse_modelfile('FROM m\nSYSTEM "Say \\"hi\\"."\n', tmp_path)
    assert recipe.system == 'Say "hi".'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SYSTEM hi\n", "no FROM"),
        ("FROM a\nFROM b\n", "line 2: FROM may appear only once"),
        ("FROM a\nFORM b\n", "line 2: unknown instruction 'FORM'"),
        ("FROM a\nPARAMETER temperature hot\n", "line 2: invalid temperature='hot'"),
        ("FROM a\nPARAMETER warmth 1\n", "line 2: invalid warmth"),
        ("FROM a\nPARAMETER top_k\n", "line 2: PARAMETER needs a name and a value"),
        ("FROM a\nMESSAGE robot hi\n", "line 2: MESSAGE role must be one of"),
        ('FROM a\nSYSTEM """never closed\nmore\n', 'line 2: a """ block is never closed'),
        ('FROM a\nSYSTEM """x""" trailing\n', 'line 2: unexpected text after closing """'),
        ("FROM\n", "line 1: FROM needs a value"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message.replace("(", r"\(")):
        parse_modelfile(text, Path("."))


def test_paths_are_refused_without_a_folder() -> None:
    with pytest.raises(ModelfileError, match="cannot name local files"):
        parse_modelfile("FROM m\nADAPTER ./lora.gguf\n")


def test_normalise_ignores_ollama_load_knobs_and_checks_values() -> None:
    kept, ignored = normalise({"num_gpu": 99, "temperature": 0.5, "stop": "x"})
    assert kept == {"temperature": 0.5, "stop": ["x"]}
    assert ignored == ["num_gpu"]
    with pytest.raises(ValidationError, match="top_p"):
        normalise({"top_p": 1.5})
    with pytest.raises(ValidationError, match="num_ctx"):
        normalise({"num_ctx": 4})


def test_sampling_defaults_use_hearth_names() -> None:
    defaults = sampling_defaults({"num_predict": 7, "num_ctx": 512, "top_k": 3})
    assert defaults == {"max_tokens": 7, "top_k": 3}
    assert sampling_defaults({"num_predict": -1}) == {"max_tokens": None}


def test_defaults_fill_only_what_the_request_left_open() -> None:
    defaults = {"temperature": 0.1, "top_k": 3, "stop": ["END"]}
    request = SamplingParams(temperature=0.9).chosen(frozenset({"temperature"}))
    applied = apply_defaults(request, defaults)
    assert (applied.temperature, applied.top_k, applied.stop) == (0.9, 3, ("END",))
    everything_chosen = SamplingParams(temperature=0.9)  # explicit None: nothing overridden
    assert apply_defaults(everything_chosen, defaults) == everything_chosen


def test_updates_count_as_choices() -> None:
    params = SamplingParams().chosen(frozenset()).updated(top_k=5)
    assert apply_defaults(params, {"top_k": 1}).top_k == 5


def test_ollama_options_record_what_was_given() -> None:
    params = sampling_params(Options(temperature=0.3, num_predict=-1), None)
    assert params.explicit is not None
    assert {"temperature", "max_tokens"} <= params.explicit
    assert "top_k" not in params.explicit


def test_openai_requests_record_what_was_given() -> None:
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 4}
    )
    chosen = chat_params(body).explicit
    assert chosen is not None and "seed" in chosen
    assert "temperature" not in chosen and "top_k" not in chosen


def test_render_parameters_round_trips_through_the_parser(tmp_path: Path) -> None:
    parameters = {"temperature": 0.25, "stop": ["<a>", 'say "b"'], "num_ctx": 1024}
    lines = "".join(f"PARAMETER {line}\n" for line in render_parameters(parameters).splitlines())
    assert parse_modelfile(f"FROM m\n{lines}", tmp_path).parameters == parameters
