"""A model whose GGUF chat template is hostile fails its own chat requests with a TemplateError,
while the same engine (and another model) keep serving: rendering happens on the caller's thread,
bounded by the template deadline, never on the engine thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import RENDER_SECONDS, ChatMessage
from hearth.errors import TemplateError

GREEDY = SamplingParams(temperature=0, max_tokens=8)
# Each iteration builds and scans a 1 MB string (from the loop variable, so jinja cannot fold
# it while compiling): it runs until the deadline stops it.
SLOW_TEMPLATE = (
    "{% for i in range(100000) %}{{ (i|string|center(1000000)|replace('1', '2'))|length }}"
    "{% endfor %}"
)
ESCAPE_TEMPLATE = "{{ cycler.__init__.__globals__.os.system('touch /tmp/hearth-pwned') }}"
CONFIG = EngineConfig(context=256, max_seqs=4, batch=128, threads=1)


@pytest.fixture(scope="module")
def hostile_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLM]:
    spec = TinyModelSpec(name="hostile", chat_template=SLOW_TEMPLATE, seed=3)
    path = write_tiny_gguf(tmp_path_factory.mktemp("hostile") / "hostile.gguf", spec)
    with LLM(path, CONFIG) as model:
        yield model


def test_a_runaway_template_fails_while_the_engine_keeps_serving(
    hostile_llm: LLM, tiny_chat_model: Path
) -> None:
    failure: list[BaseException] = []

    def chat() -> None:
        try:
            hostile_llm.chat([ChatMessage("user", "hi")], GREEDY)
        except BaseException as error:
            failure.append(error)

    renderer = threading.Thread(target=chat)
    started = time.monotonic()
    renderer.start()
    time.sleep(0.2)  # the template is rendering now
    same_engine = list(hostile_llm.complete("hello", GREEDY))
    with LLM(tiny_chat_model, CONFIG) as other:
        other_model = list(other.chat([ChatMessage("user", "hi")], GREEDY))
    served_while_rendering = renderer.is_alive()
    renderer.join(timeout=RENDER_SECONDS + 10)

    assert same_engine[-1].finished and same_engine[-1].error is None
    assert other_model[-1].finished and other_model[-1].error is None
    assert served_while_rendering  # both answered before the hostile render gave up
    assert len(failure) == 1 and isinstance(failure[0], TemplateError)
    assert "longer than" in str(failure[0])
    assert time.monotonic() - started < RENDER_SECONDS + 10
    assert list(hostile_llm.complete("again", GREEDY))[-1].finished  # still alive afterwards


def test_an_escaping_template_in_a_gguf_is_refused(tmp_path: Path) -> None:
    spec = TinyModelSpec(name="escape", chat_template=ESCAPE_TEMPLATE, seed=4)
    path = write_tiny_gguf(tmp_path / "escape.gguf", spec)
    canary = Path("/tmp/hearth-pwned")
    canary.unlink(missing_ok=True)
    with LLM(path, CONFIG) as model, pytest.raises(TemplateError, match="unsafe"):
        model.chat([ChatMessage("user", "hi")], GREEDY)
    assert not canary.exists()
