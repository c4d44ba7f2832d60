"""Parse a Modelfile (Ollama's format) into a :class:`Recipe`.

::

    # comment
    FROM gemma3:270m                  a model name, or a path to a GGUF file
    SYSTEM You are a terse assistant.
    PARAMETER temperature 0.2         repeatable; stop may be given several times
    PARAMETER stop "<end_of_turn>"
    TEMPLATE \"\"\"{{ messages ... }}\"\"\"  a Jinja chat template (not Ollama's Go templates)
    MESSAGE user Hello                history put before every conversation
    ADAPTER ./lora.gguf               a LoRA adapter in GGUF
    LICENSE \"\"\"...\"\"\"

Instructions are case-insensitive; a value is the rest of the line, a ``"..."`` string with
``\\"`` escapes, or a ``\"\"\"...\"\"\"`` block over several lines. Every error names its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import HearthError, ModelfileError
from hearth.modelfile import params as parameters

INSTRUCTIONS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE")
ROLES = ("system", "user", "assistant")
MAX_MODELFILE_BYTES = 1 << 20


@dataclass
class Recipe:
    """What to build: a base and the layers to put on it (from a Modelfile or /api/create)."""

    base: str = ""  # a model name, or a path when base_is_path
    base_is_path: bool = False
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[tuple[str, str]] | None = None  # None: keep the base's
    adapters: list[Path] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)


def parse_modelfile(text: str, directory: Path | None = None) -> Recipe:
    """A Recipe; relative paths are resolved against ``directory`` (the Modelfile's folder).
    Without a directory (a Modelfile sent over the API) a path is refused."""
    if len(text.encode()) > MAX_MODELFILE_BYTES:
        raise ModelfileError(f"Modelfile is larger than {MAX_MODELFILE_BYTES} bytes")
    recipe = Recipe()
    seen_from = False
    for line_no, keyword, value in _instructions(text):
        try:
            if keyword == "FROM":
                if seen_from:
                    raise ModelfileError("FROM may appear only once")
                seen_from = True
                recipe.base, recipe.base_is_path = _base(value, directory)
            else:
                _apply(recipe, keyword, value, directory)
        except HearthError as error:
            raise ModelfileError(f"Modelfile line {line_no}: {error}") from None
    if not seen_from:
        raise ModelfileError("Modelfile has no FROM instruction (say which model to start from)")
    return recipe


def _apply(recipe: Recipe, keyword: str, value: str, directory: Path | None) -> None:
    if keyword == "SYSTEM":
        recipe.system = value
    elif keyword == "TEMPLATE":
        recipe.template = value
    elif keyword == "LICENSE":
        recipe.licenses.append(value)
    elif keyword == "ADAPTER":
        recipe.adapters.append(_path(value, directory, "ADAPTER"))
    elif keyword == "PARAMETER":
        name, raw = _split_pair(value, "PARAMETER needs a name and a value")
        typed = parameters.parse_value(name.lower(), _unquote(raw))
        if name.lower() == "stop":
            recipe.parameters.setdefault("stop", []).append(typed)
        else:
            recipe.parameters[name.lower()] = typed
    elif keyword == "MESSAGE":
        role, content = _split_pair(value, "MESSAGE needs a role and a text")
        if role.lower() not in ROLES:
            raise ModelfileError(f"MESSAGE role must be one of {', '.join(ROLES)}, not {role!r}")
        if recipe.messages is None:
            recipe.messages = []
        recipe.messages.append((role.lower(), _unquote(content)))


def _instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, KEYWORD, value) for each instruction, multi-line values joined."""
    found = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line_no = index + 1
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ") if " " in stripped else (stripped, "", "")
        keyword = keyword.upper()
        if keyword not in INSTRUCTIONS:
            raise ModelfileError(
                f"Modelfile line {line_no}: unknown instruction {keyword!r} "
                f"(expected one of {', '.join(INSTRUCTIONS)})"
            )
        rest = rest.strip()
        if '"""' in rest:
            rest, index = _block(rest, lines, index, line_no)
        else:
            rest = _unquote(rest) if keyword != "PARAMETER" and keyword != "MESSAGE" else rest
        if not rest.strip() and keyword not in ("SYSTEM", "TEMPLATE"):
            raise ModelfileError(f"Modelfile line {line_no}: {keyword} needs a value")
        found.append((line_no, keyword, rest))
    return found


def _block(rest: str, lines: list[str], index: int, line_no: int) -> tuple[str, int]:
    """A \"\"\"-delimited value that may continue over the following lines."""
    head, _, body = rest.partition('"""')
    prefix = head  # MESSAGE user """...""" and PARAMETER stop """...""" keep their first word
    if '"""' in body:
        content, _, trailing = body.partition('"""')
        _no_trailing(trailing, line_no)
        return prefix + content, index
    parts = [body]
    while index < len(lines):
        line = lines[index]
        index += 1
        if '"""' in line:
            content, _, trailing = line.partition('"""')
            _no_trailing(trailing, index)
            parts.append(content)
            return prefix + "\n".join(parts).strip("\n"), index
        parts.append(line)
    raise ModelfileError(f'Modelfile line {line_no}: a """ block is never closed')


def _no_trailing(trailing: str, line_no: int) -> None:
    if trailing.strip():
        raise ModelfileError(f'Modelfile line {line_no}: unexpected text after closing """')


_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"$', re.DOTALL)


def _unquote(value: str) -> str:
    match = _QUOTED.match(value.strip())
    if match is None:
        return value.strip()
    return re.sub(r"\\(.)", r"\1", match.group(1))


def _split_pair(value: str, message: str) -> tuple[str, str]:
    first, _, rest = value.strip().partition(" ")
    if not first or not rest.strip():
        raise ModelfileError(message)
    return first, rest.strip()


def _base(value: str, directory: Path | None) -> tuple[str, bool]:
    if _looks_like_path(value):
        return str(_path(value, directory, "FROM")), True
    return value, False


def _looks_like_path(value: str) -> bool:
    return value.startswith(("./", "../", "/", "~")) or value.lower().endswith(".gguf")


def _path(value: str, directory: Path | None, keyword: str) -> Path:
    if directory is None:
        raise ModelfileError(
            f"{keyword} {value}: a Modelfile sent to the server cannot name local files; "
            "upload them (POST /api/blobs) and pass them as files/adapters"
        )
    try:  # "~nobody/x" has no home directory; a NUL byte is no path at all
        path = Path(value).expanduser()
        return path if path.is_absolute() else (directory / path).resolve()
    except (RuntimeError, ValueError, OSError) as error:
        raise ModelfileError(f"{keyword} {value!r} is not a usable path: {error}") from None
