"""Request bodies from untrusted clients: any JSON gives a request model or pydantic's
ValidationError (the server answers 400/422), and a body that validates converts into engine
parameters or a HearthError (400), never another exception."""

from __future__ import annotations

import contextlib
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import HearthError
from hearth.server.ollama import convert as ollama_convert
from hearth.server.ollama import schemas as ollama
from hearth.server.openai import convert as openai_convert
from hearth.server.openai import schemas as openai

USER = [{"role": "user", "content": "hi"}]
# The smallest valid body of each request model: fuzzed fields go on top of it, so most
# examples get past the required fields into the deep validators and the conversions.
MINIMAL: dict[type[pydantic.BaseModel], dict[str, Any]] = {
    openai.ChatCompletionRequest: {"model": "m", "messages": USER},
    openai.CompletionRequest: {"model": "m", "prompt": "hi"},
    openai.EmbeddingRequest: {"model": "m", "input": "hi"},
    ollama.GenerateRequest: {"model": "m", "prompt": "hi"},
    ollama.ChatRequest: {"model": "m", "messages": USER},
    ollama.EmbedRequest: {"model": "m", "input": "hi"},
    ollama.CreateRequest: {"model": "m"},
    ollama.ModelRequest: {"model": "m"},
    ollama.CopyRequest: {"source": "a", "destination": "b"},
}
MODELS = list(MINIMAL)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 70), 1 << 70),
    st.sampled_from([0, 1, -1, 2, 20, 64, 128, 2**31, 2**32 - 1, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["user", "assistant", "system", "tool", "json", "auto", "none", "model"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=16,
)


def _field_names(model: type[pydantic.BaseModel]) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        names.append(field.alias or name)
    return names


plausible = st.sampled_from([0, 1, 0.5, 2, -1, 64, "x", "json", ["a"], True, None, {}])


@st.composite
def bodies(draw: st.DrawFn, model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The minimal valid body with a few of the model's fields set to hostile values."""
    names = [*_field_names(model), "extra", "__proto__"]
    body = dict(MINIMAL[model])
    body |= draw(st.dictionaries(st.sampled_from(names), plausible | json_values, max_size=4))
    if "messages" in names and draw(st.booleans()):
        message = st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool"]), "content": scalars}
        )
        body["messages"] = draw(st.lists(message | json_values, min_size=1, max_size=3))
    return body


def _validate(model: type[pydantic.BaseModel], body: Any) -> pydantic.BaseModel | None:
    try:
        return model.model_validate(body)
    except pydantic.ValidationError:
        return None


def _convert(request: pydantic.BaseModel) -> None:
    """The pure wire → engine conversions each route makes first."""
    try:
        if isinstance(request, openai.ChatCompletionRequest):
            openai_convert.chat_params(request)
            openai_convert.chat_messages(request)
            openai_convert.tools_for_template(request)
        elif isinstance(request, openai.CompletionRequest):
            openai_convert.completion_params(request)
        elif isinstance(request, ollama.ChatRequest):
            ollama_convert.sampling_params(request.options, request.format)
            ollama_convert.chat_messages(request)
        elif isinstance(request, ollama.GenerateRequest):
            ollama_convert.sampling_params(request.options, request.format)
            ollama_convert.generate_prompt(request)
    except HearthError:
        pass


@pytest.mark.parametrize(
    "model", MODELS, ids=lambda m: f"{m.__module__.split('.')[2]}.{m.__name__}"
)
@given(data=st.data())
def test_any_body_validates_or_is_refused_and_converts_or_is_refused(
    model: type[pydantic.BaseModel], data: st.DataObject
) -> None:
    body = data.draw(bodies(model) | json_values)
    request = _validate(model, body)
    if request is not None:
        _convert(request)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(raw=st.binary(max_size=200))
def test_any_bytes_validate_or_are_refused(model: type[pydantic.BaseModel], raw: bytes) -> None:
    with contextlib.suppress(pydantic.ValidationError):
        model.model_validate_json(raw)
