"""The interactive chat prompt shared by in-process and server-backed `hearth run`."""

from __future__ import annotations

from collections.abc import Iterator

from hearth.cli.chat_session import HELP, ChatSession, Command, MultilineReader, parse_line
from hearth.cli.console import err, out
from hearth.errors import HearthError


def read_turns() -> Iterator[str | Command]:
    """What the user types: messages (several lines between \"\"\") and slash commands.

    Ends at Ctrl-D; Ctrl-C at the prompt discards the line being typed."""
    reader = MultilineReader()
    while True:
        try:
            line = input("... " if reader.collecting else ">>> ")
        except EOFError:
            out.file.write("\n")
            return
        except KeyboardInterrupt:
            out.file.write("\n")
            err.print("[dim]Use /bye or Ctrl-D to leave.[/]")
            reader = MultilineReader()
            continue
        message = reader.feed(line)
        if message is not None and message.strip():
            yield parse_line(message)


def apply_command(command: Command, session: ChatSession) -> bool:
    """Run a slash command; False means leave."""
    if command.name in ("/bye", "/exit", "/quit"):
        return False
    if command.name == "/clear":
        session.clear()
        err.print("[dim]Cleared the conversation.[/]")
    elif command.name == "/set" and len(command.args) == 3 and command.args[0] == "parameter":
        try:
            session.params = session.params.updated_from_text(command.args[1], command.args[2])
            err.print(f"[dim]Set parameter {command.args[1]} to {command.args[2]!r}.[/]")
        except HearthError as error:
            err.print(f"[bold red]error:[/] {error}")
    elif command.name == "/show" and command.args[:1] == ("parameters",):
        for name, value in vars(session.params).items():
            out.print(f"{name:18} {value!r}")
    elif command.name in ("/?", "/help"):
        out.print(HELP)
    else:
        err.print(f"[bold red]error:[/] unknown command {command.name!r}; /? lists the commands")
    return True
