"""`hearth run` against a running server: the same conversation, streamed over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hearth.cli.chat_io import apply_command, read_turns
from hearth.cli.chat_session import ChatSession, Command
from hearth.cli.console import err, out
from hearth.client import Chunk, HearthClient
from hearth.config import get_settings
from hearth.engine.sampling import SamplingParams
from hearth.errors import HearthError
from hearth.modelfile.params import SAMPLING

EXIT_INTERRUPTED = 130


def options(params: SamplingParams) -> dict[str, Any]:
    """The sampling parameters the user chose, as Ollama's `options` (the model's own
    defaults, from its Modelfile, apply to the rest on the server)."""
    given: dict[str, Any] = {
        "temperature": params.temperature,
        "top_k": params.top_k,
        "top_p": params.top_p,
        "min_p": params.min_p,
        "repeat_penalty": params.repeat_penalty,
        "seed": params.seed,
        "num_predict": params.max_tokens,
        "stop": list(params.stop) or None,
    }
    chosen = params.explicit
    return {
        key: value
        for key, value in given.items()
        if value is not None and (chosen is None or SAMPLING[key] in chosen)
    }


@contextmanager
def running_server() -> Iterator[HearthClient | None]:
    """A client of the server on HEARTH_HOST when one answers there, else None (the command
    then works in this process, on HEARTH_HOME)."""
    settings = get_settings()
    with HearthClient(f"http://{settings.host}", api_key=settings.api_key or None) as client:
        yield client if client.is_up() else None


def run(client: HearthClient, model: str, prompt: str | None, params: SamplingParams) -> int:
    if prompt is not None:
        return _stream(client.generate(model, prompt, options(params)))
    return _interactive(client, model, ChatSession(uses_template=True, params=params))


def _stream(chunks: Iterator[Chunk]) -> int:
    """Print an answer as it streams; Ctrl-C closes the stream, which aborts it server-side."""
    try:
        for chunk in chunks:
            out.file.write(chunk.text)
            out.file.flush()
    except KeyboardInterrupt:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        out.file.write("\n")
        err.print("[dim]stopped[/]")
        return EXIT_INTERRUPTED
    out.file.write("\n")
    return 0


def _interactive(client: HearthClient, model: str, session: ChatSession) -> int:
    err.print(f"[dim]Chatting with {model} on the running server; /? for help, /bye to leave.[/]")
    for turn in read_turns():
        if isinstance(turn, Command):
            if not apply_command(turn, session):
                return 0
            continue
        _chat_turn(client, model, session, turn)
    return 0


def _chat_turn(client: HearthClient, model: str, session: ChatSession, text: str) -> None:
    session.user_turn(text)
    history = [{"role": m.role, "content": m.content} for m in session.messages]
    pieces: list[str] = []

    def collected() -> Iterator[Chunk]:
        for chunk in client.chat(model, history, options(session.params)):
            pieces.append(chunk.text)
            yield chunk

    try:
        status = _stream(collected())
    except HearthError as error:
        session.forget_last_user_turn(len(text))
        err.print(f"[bold red]error:[/] {error}")
        return
    if status == 0:
        session.model_turn("".join(pieces))
    else:
        session.forget_last_user_turn(len(text))
