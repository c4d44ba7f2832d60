"""What `hearth run` remembers between turns, and how it reads what the user types. Pure logic."""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage

MULTILINE_FENCE = '"""'

HELP = """Commands:
  /set parameter NAME VALUE   change a sampling parameter (temperature, top_k, seed, stop, ...)
  /show parameters            print the current sampling parameters
  /clear                      forget the conversation so far
  /bye                        leave (also Ctrl-D)
  \"\"\"                         begin or end a multi-line message"""


@dataclass
class ChatSession:
    """History for a chat model (messages) or a base model (one growing transcript)."""

    uses_template: bool
    params: SamplingParams = field(default_factory=SamplingParams)
    messages: list[ChatMessage] = field(default_factory=list)
    transcript: str = ""

    def user_turn(self, text: str) -> list[ChatMessage] | str:
        """Record the user's text; return the messages (or the prompt) to send."""
        if self.uses_template:
            self.messages.append(ChatMessage("user", text))
            return list(self.messages)
        self.transcript += text
        return self.transcript

    def model_turn(self, text: str) -> None:
        if self.uses_template:
            self.messages.append(ChatMessage("assistant", text))
        else:
            self.transcript += text

    def forget_last_user_turn(self, prompt_length: int) -> None:
        """An aborted or failed answer: drop the unanswered user turn."""
        if self.uses_template:
            if self.messages and self.messages[-1].role == "user":
                self.messages.pop()
        else:
            self.transcript = self.transcript[:-prompt_length] if prompt_length else self.transcript

    def clear(self) -> None:
        self.messages.clear()
        self.transcript = ""


@dataclass(frozen=True)
class Command:
    """A slash command typed at the prompt."""

    name: str
    args: tuple[str, ...]


def parse_line(line: str) -> Command | str:
    """A slash command, or the text of a message."""
    stripped = line.strip()
    if stripped.startswith("/") and not stripped.startswith("//"):
        parts = stripped.split(maxsplit=3)
        return Command(parts[0].lower(), tuple(parts[1:]))
    return line


class MultilineReader:
    """Collects lines between a pair of \"\"\" fences into one message."""

    def __init__(self) -> None:
        self._lines: list[str] | None = None

    @property
    def collecting(self) -> bool:
        return self._lines is not None

    def feed(self, line: str) -> str | None:
        """Return a complete message, or None while more lines are expected."""
        if self._lines is None:
            if not line.lstrip().startswith(MULTILINE_FENCE):
                return line
            rest = line.lstrip()[len(MULTILINE_FENCE) :]
            if rest.rstrip().endswith(MULTILINE_FENCE) and rest.strip() != "":
                return rest.rstrip()[: -len(MULTILINE_FENCE)]
            self._lines = [rest] if rest else []
            return None
        if line.rstrip().endswith(MULTILINE_FENCE):
            self._lines.append(line.rstrip()[: -len(MULTILINE_FENCE)])
            text, self._lines = "\n".join(self._lines), None
            return text
        self._lines.append(line)
        return None
