"""The Responses API's stream events, built from an answer's text and tool-call events.

:class:`OutputEvents` turns :mod:`hearth.engine.tool_stream` events into OpenAI's sequence,
numbering every event. A message item opens at its first text (``output_item.added``,
``content_part.added``), streams ``output_text.delta``\\ s and closes with ``output_text.done``,
``content_part.done``, ``output_item.done``; a function call opens at its name and streams
``function_call_arguments.delta``\\ s, closing with ``function_call_arguments.done`` and
``output_item.done``. ``output`` holds the finished items, as the final response lists them.
Pure logic: no model, no HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.engine.tool_stream import ArgumentsDelta, ContentDelta, ToolCallStart, ToolStreamEvent
from hearth.server.openai.convert import tool_call_id
from hearth.server.responses import convert

Event = dict[str, Any]


@dataclass
class _OpenItem:
    kind: str  # "message" or "function_call"
    item_id: str
    index: int
    text: list[str] = field(default_factory=list)
    name: str = ""
    call_id: str = ""

    def item(self, status: str = "completed") -> dict[str, Any]:
        if self.kind == "message":
            return convert.message_item(self.item_id, "".join(self.text), status)
        return convert.function_call_item(
            self.item_id, self.call_id, self.name, "".join(self.text), status
        )


class OutputEvents:
    def __init__(self) -> None:
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self._open: _OpenItem | None = None

    def event(self, kind: str, **fields: Any) -> Event:
        """One event, numbered in the order it is sent."""
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def feed(self, events: list[ToolStreamEvent]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, ContentDelta):
                out += self._text(event.text)
            elif isinstance(event, ToolCallStart):
                out += self._close()
                out += self._open_call(event.name)
            elif isinstance(event, ArgumentsDelta) and self._open is not None:
                self._open.text.append(event.text)
                out.append(
                    self._item_event(
                        self._open, "response.function_call_arguments.delta", event.text
                    )
                )
        return out

    def finish(self) -> list[Event]:
        """Close the open item; an answer with no output at all still gets its (empty) message."""
        if self._open is None and not self.output:
            return [*self._open_message(), *self._close()]
        return self._close()

    def _text(self, text: str) -> list[Event]:
        if not text:
            return []
        out: list[Event] = []
        if self._open is None or self._open.kind != "message":
            out += self._close()
            out += self._open_message()
        message = self._open
        assert message is not None
        message.text.append(text)
        out.append(self._part_event(message, "response.output_text.delta", delta=text, logprobs=[]))
        return out

    def _open_message(self) -> list[Event]:
        message = _OpenItem("message", convert.new_id("msg"), len(self.output))
        self._open = message
        added = message.item("in_progress")
        return [
            self.event("response.output_item.added", output_index=message.index, item=added),
            self._part_event(message, "response.content_part.added", part=convert.output_text("")),
        ]

    def _open_call(self, name: str) -> list[Event]:
        self._open = _OpenItem(
            "function_call",
            convert.new_id("fc"),
            len(self.output),
            name=name,
            call_id=tool_call_id(),
        )
        item = self._open.item("in_progress")
        return [self.event("response.output_item.added", output_index=self._open.index, item=item)]

    def _close(self) -> list[Event]:
        open_item, self._open = self._open, None
        if open_item is None:
            return []
        text = "".join(open_item.text)
        if open_item.kind == "message":
            out = [
                self._part_event(open_item, "response.output_text.done", text=text, logprobs=[]),
                self._part_event(
                    open_item, "response.content_part.done", part=convert.output_text(text)
                ),
            ]
        else:
            out = [
                self.event(
                    "response.function_call_arguments.done",
                    item_id=open_item.item_id,
                    output_index=open_item.index,
                    name=open_item.name,
                    arguments=text,
                )
            ]
        item = open_item.item()
        out.append(self.event("response.output_item.done", output_index=open_item.index, item=item))
        self.output.append(item)
        return out

    def _part_event(self, item: _OpenItem, kind: str, **fields: Any) -> Event:
        return self.event(
            kind,
            item_id=item.item_id,
            output_index=item.index,
            content_index=0,
            **fields,
        )

    def _item_event(self, item: _OpenItem, kind: str, delta: str) -> Event:
        return self.event(kind, item_id=item.item_id, output_index=item.index, delta=delta)
