"""`hearth run MODEL [PROMPT]`: answer in-process, no server needed.

One-shot when a prompt is given (or piped on stdin), an interactive chat otherwise. Tokens are
streamed to the terminal as they come. Ctrl-C stops the answer cleanly: the request is aborted
(its KV cells freed) and the terminal is left as it was.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from hearth.cli import remote
from hearth.cli.chat_io import apply_command, read_turns
from hearth.cli.chat_session import ChatSession, Command
from hearth.cli.console import byte_progress, err, out
from hearth.config import get_settings
from hearth.engine.engine import Generation
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.errors import HearthError
from hearth.store import Store

EXIT_INTERRUPTED = 130


def run(
    model: Annotated[str, typer.Argument(help="Model name, e.g. gemma3:270m")],
    prompt: Annotated[
        str | None, typer.Argument(help="Prompt; omit for an interactive chat")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature (0 = greedy)")
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="Top-k truncation (0 = off)")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling threshold")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed for reproducible sampling")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Stop after this many new tokens")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable)")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Print timings after the answer")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Run in this process even when a server is up")
    ] = False,
) -> None:
    """Run a model: answer a prompt, or chat interactively.

    When `hearth serve` answers on HEARTH_HOST, the model runs there (and stays loaded for the
    next command); otherwise it runs in this process."""
    params = _params(temperature, top_k, top_p, seed, max_tokens, stop)
    prompt = _with_stdin(prompt)
    settings = get_settings()
    if not local:
        with remote.running_server() as client:
            if client is not None:
                raise typer.Exit(remote.run(client, model, prompt, params))
    store = Store(settings)
    with byte_progress(f"pulling {model}") as progress:
        stored = store.ensure(model, progress=progress)
    started = time.monotonic()
    profile = store.profile(stored)
    config = EngineConfig.from_settings(settings, max_seqs=1, cache_seqs=1).for_profile(profile)
    with LLM(stored.model_path, config, profile) as llm:
        session = ChatSession(uses_template=llm.chat_template is not None, params=params)
        if not session.uses_template:
            err.print(
                f"[dim]{stored.name} has no chat template (a base model): "
                "running plain text completion[/]"
            )
        if prompt is not None:
            status = _answer(llm, session, prompt, started, verbose)
            raise typer.Exit(status)
        _interactive(llm, session, verbose)


def _params(
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    max_tokens: int | None,
    stop: list[str] | None,
) -> SamplingParams:
    given = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
        "max_tokens": max_tokens,
    }
    changes: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if stop:
        changes["stop"] = tuple(stop)
    return SamplingParams().updated(**changes).chosen(frozenset(changes))


def _with_stdin(prompt: str | None) -> str | None:
    """Piped input is the prompt, or comes before it (`cat f | hearth run m "summarise"`)."""
    if sys.stdin is None or sys.stdin.isatty():
        return prompt
    # The final newline of `echo ... |` is not part of what the user meant to ask.
    piped = sys.stdin.read().rstrip("\n")
    if not piped.strip():
        return prompt
    return piped if prompt is None else f"{piped.rstrip()}\n\n{prompt}"


def _answer(llm: LLM, session: ChatSession, text: str, started: float, verbose: bool) -> int:
    """Stream one answer to stdout. Returns the exit status (130 when interrupted)."""
    turn = session.user_turn(text)
    generation: Generation | None = None
    pieces: list[str] = []
    first_token_at: float | None = None
    try:
        if isinstance(turn, str):
            generation = llm.complete(turn, session.params)
        else:
            generation = llm.chat(turn, session.params)
        for output in generation:
            if first_token_at is None:
                first_token_at = time.monotonic()
            pieces.append(output.text)
            out.file.write(output.text)
            out.file.flush()
    except KeyboardInterrupt:
        if generation is not None:
            _stop(generation)
        session.forget_last_user_turn(len(text))
        return EXIT_INTERRUPTED
    except HearthError:
        session.forget_last_user_turn(len(text))
        raise
    out.file.write("\n")
    session.model_turn("".join(pieces))
    if verbose:
        _print_stats(generation, started, first_token_at)
    return 0


def _stop(generation: Generation) -> None:
    generation.abort()
    for _ in generation:  # wait until the engine confirms, so the sequence is free
        pass
    out.file.write("\n")
    err.print("[dim]stopped[/]")


def _print_stats(generation: Generation, started: float, first_token_at: float | None) -> None:
    request = generation.request
    done = time.monotonic()
    ttft = (first_token_at or done) - started
    decode_time = max(done - (first_token_at or done), 1e-9)
    rate = max(len(request.output_tokens) - 1, 0) / decode_time
    err.print(
        f"[dim]prompt tokens: {len(request.prompt_tokens)}  "
        f"new tokens: {len(request.output_tokens)}  "
        f"first token: {ttft * 1000:.0f} ms  generation: {rate:.1f} tokens/s[/]"
    )


def _interactive(llm: LLM, session: ChatSession, verbose: bool) -> None:
    err.print("[dim]Type a message; /? for help, /bye to leave.[/]")
    for turn in read_turns():
        if isinstance(turn, Command):
            if not apply_command(turn, session):
                return
            continue
        try:
            _answer(llm, session, turn, time.monotonic(), verbose)
        except HearthError as error:
            err.print(f"[bold red]error:[/] {error}")
