"""A base and two LoRA fine-tunes of it served by one loaded base, through a real server and
the official `openai` client: each name answers with its own adapter, concurrently too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hearth.devtools.tiny_gguf import write_tiny_lora
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.modelfile.create import create_model
from hearth.modelfile.parse import parse_modelfile
from hearth.store import Store
from hearth.store.profile import ModelProfile
from tests.server.live_server import live_server, server_settings
from tests.server.test_metrics_health import metric

NAMES = ("tiny:latest", "tuned-a:latest", "tuned-b:latest")
QUESTION = "Which adapter answers?"
NO_EOS = {"2": -100}  # the tiny model's </s>: answers run to max_tokens
MARGIN = 0.01  # the tiny model's logprobs move about 1e-3 with the batch around them


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("served-adapters")
    return {
        f"tuned-{x}": write_tiny_lora(folder / f"{x}.gguf", seed=seed)
        for x, seed in (("a", 11), ("b", 12), ("c", 13))
    }


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, adapters: dict[str, Path]
) -> Path:
    home = tmp_path_factory.mktemp("adapter-home")
    store = Store(server_settings(home))
    store.import_gguf(tiny_model, "tiny")
    for name in ("tuned-a", "tuned-b"):
        create(store, name, adapters[name], home)
    return home


def create(store: Store, name: str, adapter: Path, folder: Path) -> None:
    create_model(store, name, parse_modelfile(f"FROM tiny\nADAPTER {adapter}\n", folder))


@pytest.fixture(scope="module")
def base_url(home: Path) -> Iterator[str]:
    with live_server(server_settings(home)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def first_logprobs(tiny_model: Path, adapters: dict[str, Path]) -> dict[str, float]:
    """Each model's first-token log-probability from an LLM loaded with its adapter alone."""
    config = EngineConfig(context=1024, max_seqs=1, threads=2)
    found = {}
    for name in (*NAMES, "tuned-c:latest"):
        short = name.removesuffix(":latest")
        profile = ModelProfile(adapters=(adapters[short],) if short in adapters else ())
        with LLM(tiny_model, config, profile) as llm:
            tokens = llm.conversation_tokens([ChatMessage("user", QUESTION)])
            params = SamplingParams(temperature=0, max_tokens=1, logprobs=1)
            generation = llm.generate(tokens, params)[0]
            generation.text()
            found[name] = generation.request.logprobs[0].logprob
    return found


def ask(client: openai.OpenAI, model: str, max_tokens: int = 1) -> list[Any]:
    """The answer's tokens with their log-probabilities (greedy)."""
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=max_tokens,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        logit_bias=NO_EOS,
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    return list(logprobs.content)


def loaded_bases(base_url: str) -> float:
    return metric(httpx.get(f"{base_url}/metrics").text, "hearth_loaded_models")


def loaded_names(base_url: str) -> list[str]:
    return sorted(m["name"] for m in httpx.get(f"{base_url}/api/ps").json()["models"])


def test_three_names_are_served_by_one_loaded_base(
    client: openai.OpenAI, base_url: str, first_logprobs: dict[str, float]
) -> None:
    for name in NAMES:
        first = ask(client, name)[0]
        assert first.logprob == pytest.approx(first_logprobs[name], abs=1e-3), name
    assert len({round(first_logprobs[name], 3) for name in NAMES}) == 3  # adapters matter
    assert loaded_names(base_url) == list(NAMES)
    assert loaded_bases(base_url) == 1


def decided(content: list[Any]) -> list[str]:
    """Tokens up to the first close call between the two most likely ones."""
    tokens = []
    for entry in content:
        top = entry.top_logprobs
        if top[0].logprob - top[1].logprob < MARGIN:
            break
        tokens.append(entry.token)
    return tokens


def test_concurrent_requests_to_the_three_names(client: openai.OpenAI, base_url: str) -> None:
    alone = {name: decided(ask(client, name, max_tokens=10)) for name in NAMES}
    answers: dict[tuple[str, int], list[str]] = {}
    failures: list[BaseException] = []

    def run(name: str, i: int) -> None:
        try:
            answers[(name, i)] = [e.token for e in ask(client, name, max_tokens=10)]
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(n, i)) for i in range(3) for n in NAMES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for (name, _), tokens in answers.items():
        assert len(alone[name]) >= 3
        assert tokens[: len(alone[name])] == alone[name], name
    assert loaded_bases(base_url) == 1


def test_a_fine_tune_created_while_serving_is_served_without_a_reload(
    client: openai.OpenAI,
    base_url: str,
    home: Path,
    adapters: dict[str, Path],
    first_logprobs: dict[str, float],
) -> None:
    ask(client, "tiny")  # the base is loaded
    create(Store(server_settings(home)), "tuned-c", adapters["tuned-c"], home)
    first = ask(client, "tuned-c")[0]
    assert first.logprob == pytest.approx(first_logprobs["tuned-c:latest"], abs=1e-3)
    assert "tuned-c:latest" in loaded_names(base_url)
    assert loaded_bases(base_url) == 1


def test_deleting_a_fine_tune_unloads_it_and_keeps_the_base(
    client: openai.OpenAI, base_url: str
) -> None:
    ask(client, "tuned-b")
    ask(client, "tiny")
    reply = httpx.request("DELETE", f"{base_url}/api/delete", json={"model": "tuned-b"})
    assert reply.status_code == 200
    assert "tuned-b:latest" not in loaded_names(base_url)
    assert "tiny:latest" in loaded_names(base_url)
    assert loaded_bases(base_url) == 1
    with pytest.raises(openai.NotFoundError):
        ask(client, "tuned-b")
