"""The Messages API's stream events, built from an answer's text and tool-call events.

:class:`MessageEvents` turns :mod:`hearth.engine.tool_stream` events into Anthropic's sequence:
a text block opens at its first text (``content_block_start``; the first block is followed by a
``ping``, as Anthropic's streams are), streams ``text_delta``\\ s and closes with
``content_block_stop``; a tool use opens at its name with an empty ``input`` and streams its
arguments as ``input_json_delta``\\ s. ``content`` holds the finished blocks; ``calls`` counts the
tool uses. Pure logic: no model, no HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hearth.engine.tool_stream import ArgumentsDelta, ContentDelta, ToolCallStart, ToolStreamEvent
from hearth.engine.tools import ToolCall
from hearth.server.anthropic import convert

Event = tuple[str, dict[str, Any]]


@dataclass
class _Block:
    index: int
    kind: str  # "text" or "tool_use"
    parts: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""

    def start(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": ""}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}

    def finished(self) -> dict[str, Any]:
        text = "".join(self.parts)
        if self.kind == "text":
            return {"type": "text", "text": text}
        block = convert.tool_use_block(ToolCall(self.name, text or "{}"))
        return {**block, "id": self.id}


class MessageEvents:
    def __init__(self, *, single_call: bool = False) -> None:
        self.content: list[dict[str, Any]] = []
        self.calls = 0
        self._single_call = single_call  # disable_parallel_tool_use: the first call only
        self._open: _Block | None = None
        self._pinged = False

    def feed(self, events: list[ToolStreamEvent]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, ToolCallStart):
                if self._single_call and self.calls:
                    continue
                out += self._close()
                out += self._open_block("tool_use", event.name)
                self.calls += 1
            elif self._open is not None and self._open.kind == "tool_use":
                if isinstance(event, ArgumentsDelta) and event.index == self.calls - 1:
                    out += self._delta({"type": "input_json_delta", "partial_json": event.text})
                elif isinstance(event, ContentDelta):
                    out += self._text(event.text)
            elif isinstance(event, ContentDelta):
                out += self._text(event.text)
        return out

    def finish(self) -> list[Event]:
        return self._close()

    def _text(self, text: str) -> list[Event]:
        if not text:
            return []
        out: list[Event] = []
        if self._open is None or self._open.kind != "text":
            out += self._close()
            out += self._open_block("text")
        return out + self._delta({"type": "text_delta", "text": text})

    def _delta(self, delta: dict[str, Any]) -> list[Event]:
        block = self._open
        assert block is not None
        block.parts.append(delta.get("text", delta.get("partial_json", "")))
        return [("content_block_delta", _event("content_block_delta", block.index, delta=delta))]

    def _open_block(self, kind: str, name: str = "") -> list[Event]:
        block = _Block(len(self.content), kind, name=name)
        if kind == "tool_use":
            block.id = convert.tool_use_id()
        self._open = block
        out: list[Event] = [
            (
                "content_block_start",
                _event("content_block_start", block.index, content_block=block.start()),
            )
        ]
        if not self._pinged:
            self._pinged = True
            out.append(("ping", {"type": "ping"}))
        return out

    def _close(self) -> list[Event]:
        block, self._open = self._open, None
        if block is None:
            return []
        self.content.append(block.finished())
        return [("content_block_stop", _event("content_block_stop", block.index))]


def _event(kind: str, index: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "index": index, **fields}


def data(event: Event) -> str:
    name, body = event
    return f"event: {name}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
