"""`hearth run` as a user runs it: a real process, a real store, the real model."""

from __future__ import annotations

import termios
from pathlib import Path

import pexpect
import pytest

from hearth.config import Settings
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.store import Store
from tests.cli.process import HEARTH, hearth_env, run_hearth

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def expected_answer(gemma_home: Path) -> str:
    model = Store(Settings.from_env({"HEARTH_HOME": str(gemma_home)})).resolve("gemma3:270m")
    with LLM(model.model_path, EngineConfig(context=4096, max_seqs=1, threads=2)) as llm:
        return llm.complete(PROMPT, SamplingParams(temperature=0, max_tokens=12)).text()


@pytest.mark.gemma
def test_one_shot_streams_the_greedy_answer(gemma_home: Path, expected_answer: str) -> None:
    result = run_hearth(
        gemma_home, "run", "gemma3:270m", PROMPT, "--temperature", "0", "--max-tokens", "12"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_answer + "\n"
    assert "no chat template" in result.stderr
    assert "plain text completion" in result.stderr


@pytest.mark.gemma
def test_prompt_from_stdin(gemma_home: Path, expected_answer: str) -> None:
    result = run_hearth(
        gemma_home,
        "run",
        "gemma3:270m",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        stdin=PROMPT + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_answer + "\n"


def test_unknown_model_is_one_line_with_close_matches(hearth_home: Path) -> None:
    result = run_hearth(hearth_home, "run", "gemma3:27m", "hi")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "gemma3:27m" in lines[0]
    assert "gemma3:270m" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.gemma
@pytest.mark.parametrize(
    ("option", "value", "param"),
    [
        ("--temperature", "-1", "temperature"),
        ("--top-p", "2", "top_p"),
        ("--max-tokens", "0", "max_tokens"),
    ],
)
def test_invalid_sampling_parameter_names_it(
    gemma_home: Path, option: str, value: str, param: str
) -> None:
    result = run_hearth(gemma_home, "run", "gemma3:270m", "hi", option, value)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert param in result.stderr


@pytest.mark.gemma
def test_ctrl_c_stops_a_one_shot_answer_cleanly(gemma_home: Path) -> None:
    child = pexpect.spawn(
        HEARTH,
        ["run", "gemma3:270m", "Write a very long story about the sea."],
        env=hearth_env(gemma_home),
        encoding="utf-8",
        timeout=60,
    )
    child.expect("plain text completion")
    child.expect(r"\w+ \w+ \w+")  # the answer is streaming
    child.sendintr()
    child.expect("stopped")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in (child.before or "")


@pytest.mark.gemma
def test_interactive_chat_set_clear_interrupt_and_bye(gemma_home: Path) -> None:
    child = pexpect.spawn(
        HEARTH, ["run", "gemma3:270m"], env=hearth_env(gemma_home), encoding="utf-8", timeout=60
    )
    attrs_before = termios.tcgetattr(child.child_fd)
    child.expect(">>> ")
    child.sendline("/set parameter temperature 0")
    child.expect("Set parameter temperature")
    child.sendline("/set parameter top_k many")
    child.expect("top_k")
    child.expect(">>> ")
    child.sendline("/show parameters")
    child.expect(r"temperature\s+0\.0")
    child.sendline('"""Write a very long story')
    child.expect(r"\.\.\. ")
    child.sendline('about the sea."""')
    child.expect('sea."""\r\n')  # the terminal's echo of our input
    child.expect(r"\w+ \w+ \w+")  # the answer is streaming
    child.sendintr()
    child.expect("stopped")
    child.expect(">>> ")  # back at the prompt, the session still usable
    assert termios.tcgetattr(child.child_fd) == attrs_before  # terminal modes untouched
    child.sendline("/clear")
    child.expect("Cleared")
    child.sendline("/set parameter max_tokens 3")
    child.sendline("Hello")
    child.expect(">>> ")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_model_uses_its_template(hearth_home: Path, tiny_chat_model: Path) -> None:
    Store(Settings.from_env({"HEARTH_HOME": str(hearth_home)})).import_gguf(
        tiny_chat_model, "tiny-chat"
    )
    result = run_hearth(hearth_home, "run", "tiny-chat", "hi", "--max-tokens", "4", "--verbose")
    assert result.returncode == 0, result.stderr
    assert "no chat template" not in result.stderr
    assert "new tokens: 4" in result.stderr
