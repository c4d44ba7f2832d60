"""Modelfiles (from the CLI or /api/create): a Recipe or a ModelfileError naming the line, never
another exception; and a Modelfile sent without a directory (the API) never names a local path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.errors import ModelfileError
from hearth.modelfile.params import SAMPLING
from hearth.modelfile.parse import INSTRUCTIONS, Recipe, parse_modelfile

keywords = st.sampled_from([*INSTRUCTIONS, "from", "Parameter", "FROMX", "#", "", "ſystem"])
pieces = st.sampled_from(
    [
        '"""',
        '"',
        "\\",
        '\\"',
        " ",
        "\t",
        "\0",
        "\r",
        "~",
        "~nobody-here/x",
        "../",
        "/etc/passwd",
        "./m.gguf",
        "x.GGUF",
        "gemma3:270m",
        "user",
        "assistant",
        "system",
        "nan",
        "inf",
        "-1",
        "1e309",
        "99999999999999999999999",
        "true",
        *SAMPLING,
        "num_ctx",
    ]
)
values = st.lists(pieces | st.text(max_size=6), max_size=6).map("".join)
path_values = st.lists(
    st.sampled_from(["~", "~nobody-here", "./", "../", "/", "\0", "x", ".gguf", "\u00e9"]),
    min_size=1,
    max_size=5,
).map("".join)
path_lines = st.builds(lambda k, v: f"{k} {v}", st.sampled_from(["FROM", "ADAPTER"]), path_values)
lines = st.builds(lambda k, v: f"{k} {v}", keywords, values) | path_lines | values
modelfiles = st.lists(lines, max_size=10).map("\n".join)


def _parse(text: str, directory: Path | None) -> Recipe | None:
    try:
        return parse_modelfile(text, directory)
    except ModelfileError:
        return None


@given(text=modelfiles)
def test_api_modelfiles_parse_or_fail_clearly_and_name_no_local_file(text: str) -> None:
    recipe = _parse(text, None)
    if recipe is not None:
        assert not recipe.base_is_path and recipe.adapters == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=modelfiles)
def test_cli_modelfiles_parse_or_fail_clearly(text: str, tmp_path: Path) -> None:
    _parse(text, tmp_path)


@given(text=st.text(max_size=300))
def test_arbitrary_text_parses_or_fails_clearly(text: str) -> None:
    _parse(text, None)


@pytest.mark.parametrize(
    "text",
    [
        'FROM x\nSYSTEM """' + "a\n" * 20000,  # a block never closed
        "FROM x\n" + "PARAMETER stop " + '"' + '\\"' * 100000,  # an unterminated quote
        "FROM x\n" + "MESSAGE user " + '"' * 200000,
        "FROM x\n" + "# comment\n" * 100000,
    ],
)
def test_adversarial_modelfiles_are_handled_in_linear_time(text: str) -> None:
    started = time.process_time()
    _parse(text, None)
    assert time.process_time() - started < 2  # linear: milliseconds; quadratic: minutes
