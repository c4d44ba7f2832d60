"""A model's profile (from ``hearth create``) applied by the engine to every request."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.devtools.tiny_gguf import write_tiny_lora
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.modelfile import parse_modelfile
from hearth.modelfile.create import create_model
from hearth.store import Store
from hearth.store.profile import ModelProfile

CONFIG = EngineConfig(context=256, max_seqs=2, batch=64, threads=2)
NO_EOS = ((2, -100.0),)  # the tiny model's </s>: keep generating to the length limit


def _readable(llm: LLM, tokens: list[int]) -> str:
    # The tiny byte tokenizer writes spaces as SentencePiece's "▁" and adds one in front.
    return llm.tokenizer.detokenize(tokens).replace("\u2581", " ").removeprefix(" ")


def _text(llm: LLM, messages: list[ChatMessage]) -> str:
    return _readable(llm, llm.conversation_tokens(messages))


def test_system_prompt_and_messages_lead_every_chat(tiny_chat_model: Path) -> None:
    profile = ModelProfile(system="Be kind.", messages=(("user", "Hi"), ("assistant", "Hello")))
    with LLM(tiny_chat_model, CONFIG, profile) as llm:
        assert _text(llm, [ChatMessage("user", "Q")]) == (
            "<|system|>Be kind.\n<|user|>Hi\n<|assistant|>Hello\n<|user|>Q\n<|assistant|>"
        )
        own = _text(llm, [ChatMessage("system", "Mine."), ChatMessage("user", "Q")])
        assert own.startswith("<|system|>Mine.\n<|user|>Hi\n") and "Be kind." not in own


def test_generate_prompt_goes_through_the_template(tiny_chat_model: Path) -> None:
    with LLM(tiny_chat_model, CONFIG, ModelProfile(system="S")) as llm:
        templated = _readable(llm, llm.prompt_tokens("Q"))
        assert templated == "<|system|>S\n<|user|>Q\n<|assistant|>"
        assert _readable(llm, llm.prompt_tokens("Q", raw=True)) == "Q"


def test_a_profile_template_replaces_the_models(tiny_chat_model: Path) -> None:
    template = "{% for m in messages %}[{{ m.content }}]{% endfor %}"
    with LLM(tiny_chat_model, CONFIG, ModelProfile(template=template)) as llm:
        assert _text(llm, [ChatMessage("user", "a"), ChatMessage("assistant", "b")]) == "[a][b]"


def test_parameters_are_defaults_the_request_can_override(tiny_model: Path) -> None:
    profile = ModelProfile(parameters={"num_predict": 3, "temperature": 0})
    open_request = SamplingParams(logit_bias=NO_EOS).chosen(frozenset({"logit_bias"}))
    with LLM(tiny_model, CONFIG, profile) as llm:
        assert list(llm.complete("x", open_request))[-1].completion_tokens == 3
        chosen = open_request.updated(max_tokens=5)
        assert list(llm.complete("x", chosen))[-1].completion_tokens == 5


def _first_logprob(llm: LLM) -> float:
    params = SamplingParams(temperature=0, max_tokens=1, logprobs=0)
    entries = [
        entry
        for output in llm.complete("adapters change answers", params)
        for entry in output.logprobs
    ]
    return entries[0].logprob


def test_an_adapter_changes_the_model(tiny_model: Path, tmp_path: Path) -> None:
    adapter = write_tiny_lora(tmp_path / "lora.gguf")
    with LLM(tiny_model, CONFIG) as plain:
        base = _first_logprob(plain)
        assert _first_logprob(plain) == base
    with LLM(tiny_model, CONFIG, ModelProfile(adapters=(adapter,))) as adapted:
        assert _first_logprob(adapted) != pytest.approx(base, abs=1e-4)


def test_manager_loads_a_created_model_with_its_context(
    hearth_home: Path, tiny_model: Path, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {"HEARTH_HOME": str(hearth_home), "HEARTH_THREADS": "1", "HEARTH_CONTEXT": "1024"}
    )
    store = Store(settings)
    store.import_gguf(tiny_model, "tiny")
    recipe = parse_modelfile("FROM tiny\nPARAMETER num_ctx 512\nSYSTEM Short.\n", tmp_path)
    create_model(store, "short", recipe)
    with ModelManager(store, settings) as manager:
        with manager.acquire("short") as short:
            assert short.context_length == 512
            assert short.profile.system == "Short."
        with manager.acquire("tiny") as tiny:
            assert tiny.context_length == 1024
