"""Training data: read, validate, render and tokenize examples, with a loss mask.

Three formats, one JSON object a line (or the same fields in a Hugging Face dataset folder saved
with ``datasets``' ``save_to_disk``):

- chat (OpenAI's fine-tuning format): ``{"messages": [{"role": "user", "content": "..."}, ...]}``
  with at least one ``assistant`` message; loss on the assistant messages only;
- prompt/completion: ``{"prompt": "...", "completion": "..."}``; loss on the completion only;
- plain text: ``{"text": "..."}``; loss on every token.

Every bad line is reported with its number (bad JSON, unknown format, missing or unknown roles,
empty content, an example longer than ``max_seq_len`` tokens): nothing is dropped silently.
EOS is appended to what the model learns to say, or it would never learn to stop.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hearth.errors import DatasetError

ROLES = frozenset({"system", "user", "assistant"})
IGNORE = -100  # label of a token the loss skips (torch's cross_entropy ignore_index)
MAX_LINE_BYTES = 1 << 20

# Used when the base model has no chat template of its own; it is stored with the fine-tune
# so that serving renders conversations exactly as training did.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}User: {{ m.content }}\n"
    "{% else %}Assistant: {{ m.content }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True)
class Example:
    """One validated example; ``line`` is its 1-based line (or row) in the source."""

    line: int
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str | None = None
    completion: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class TokenizedExample:
    line: int
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass(frozen=True)
class TokenStats:
    examples: int
    total_tokens: int
    trained_tokens: int
    min_tokens: int
    mean_tokens: float
    max_tokens: int

    def describe(self) -> str:
        return (
            f"{self.examples} examples, {self.total_tokens} tokens ({self.trained_tokens} "
            f"trained), per example min {self.min_tokens} / mean {self.mean_tokens:.0f} / "
            f"max {self.max_tokens}"
        )


class Tokenizer(Protocol):
    """What this module needs of a transformers tokenizer."""

    eos_token_id: int | None
    bos_token_id: int | None
    chat_template: str | None

    def __call__(self, text: str, **kwargs: Any) -> Any: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def load_examples(path: Path) -> list[Example]:
    """Validated examples from a JSONL file or a dataset folder; DatasetError lists bad lines."""
    if path.is_dir():
        rows: Iterator[tuple[int, object]] = _dataset_rows(path)
    elif path.is_file():
        rows = jsonl_rows(path)
    else:
        raise DatasetError(str(path), ["no such file or folder"])
    examples, problems = [], []
    for line, row in rows:
        if isinstance(row, BadRow):
            problems.append(f"line {line}: {row.reason}")
            continue
        try:
            examples.append(parse_example(line, row))
        except ValueError as error:
            problems.append(f"line {line}: {error}")
    if problems:
        raise DatasetError(str(path), problems)
    if not examples:
        raise DatasetError(str(path), ["no examples (the dataset is empty)"])
    return examples


def file_digest(path: Path) -> str:
    """sha256 of a data file, or of a dataset folder's files in name order (for lineage)."""
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            sha.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


@dataclass(frozen=True)
class BadRow:
    """A line that is not a JSON value (or too long), and why."""

    reason: str


def jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON or BadRow) for each non-blank line; also used by hearth.evals."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES:
                yield number, BadRow(f"longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                yield number, json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                yield number, BadRow(f"not valid JSON ({error})")


def _dataset_rows(path: Path) -> Iterator[tuple[int, object]]:
    import datasets  # type: ignore[import-untyped]

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise DatasetError(str(path), [f"not a saved Hugging Face dataset ({error})"]) from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise DatasetError(str(path), [f"no 'train' split (has {', '.join(loaded)})"])
        loaded = loaded["train"]
    yield from enumerate(loaded, start=1)


def parse_example(line: int, row: object) -> Example:
    """One example, or ValueError saying what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        return Example(line, messages=_messages(row["messages"]))
    if "prompt" in row or "completion" in row:
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("'prompt' is missing or empty")
        if not isinstance(completion, str) or not completion.strip():
            raise ValueError("'completion' is missing or empty")
        return Example(line, prompt=prompt, completion=completion)
    if "text" in row:
        text = row["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("'text' is empty")
        return Example(line, text=text)
    raise ValueError("unknown format: expected 'messages', 'prompt'/'completion' or 'text'")


def _messages(value: object) -> tuple[tuple[str, str], ...]:
    messages = parse_messages(value)
    if not any(role == "assistant" for role, _ in messages):
        raise ValueError("no assistant message: nothing to learn")
    return messages


def parse_messages(value: object) -> tuple[tuple[str, str], ...]:
    """(role, content) pairs of a non-empty list of chat messages, or ValueError saying which
    message is wrong; also used by hearth.evals."""
    if not isinstance(value, list) or not value:
        raise ValueError("'messages' must be a non-empty list")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"message {index}: expected an object")
        role, content = message.get("role"), message.get("content")
        if role is None:
            raise ValueError(f"message {index}: missing 'role'")
        if role not in ROLES:
            raise ValueError(f"message {index}: unknown role {role!r} (use {sorted(ROLES)})")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {index} ({role}): empty content")
        messages.append((role, content))
    return tuple(messages)


def tokenize_examples(
    examples: Sequence[Example], tokenizer: Tokenizer, max_seq_len: int, source: str
) -> list[TokenizedExample]:
    """Token ids and labels for each example; DatasetError lists those over ``max_seq_len``."""
    out, problems = [], []
    for example in examples:
        tokenized = tokenize_example(example, tokenizer)
        if len(tokenized.input_ids) > max_seq_len:
            problems.append(
                f"line {example.line}: {len(tokenized.input_ids)} tokens, over --max-seq-len "
                f"{max_seq_len}"
            )
        elif tokenized.trained_tokens == 0:
            problems.append(f"line {example.line}: no tokens to learn after tokenizing")
        else:
            out.append(tokenized)
    if problems:
        raise DatasetError(source, problems)
    return out


def tokenize_example(example: Example, tokenizer: Tokenizer) -> TokenizedExample:
    eos = _eos(tokenizer)
    if example.text is not None:
        ids = _encode(tokenizer, example.text, special=True)
        return TokenizedExample(example.line, [*ids, eos], [*ids, eos])
    if example.prompt is not None and example.completion is not None:
        spans = [(len(example.prompt), len(example.prompt) + len(example.completion))]
        text = example.prompt + example.completion
        return _masked(example.line, tokenizer, text, spans, special=True, eos=eos)
    text, spans = render_chat(tokenizer, example.messages)
    return _masked(example.line, tokenizer, text, spans, special=False, eos=None)


def chat_template_of(tokenizer: Tokenizer) -> str:
    return tokenizer.chat_template or FALLBACK_CHAT_TEMPLATE


def render_chat(
    tokenizer: Tokenizer, messages: Sequence[tuple[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The conversation's text and the character spans of its assistant turns.

    Each span runs from the end of the prompt that precedes an assistant turn (generation
    prompt included) to the end of the text with that turn; templates are rendered as prefixes
    of one another, which holds for the chat templates models ship."""
    template = chat_template_of(tokenizer)
    spans = []
    for index, (role, _) in enumerate(messages):
        if role != "assistant":
            continue
        before = _render(tokenizer, template, messages[:index], generation_prompt=True)
        after = _render(tokenizer, template, messages[: index + 1], generation_prompt=False)
        if not after.startswith(before):
            raise DatasetError("chat template", ["it does not render a conversation as prefixes"])
        spans.append((len(before), len(after)))
    return _render(tokenizer, template, messages, generation_prompt=False), spans


def _render(
    tokenizer: Tokenizer,
    template: str,
    messages: Sequence[tuple[str, str]],
    *,
    generation_prompt: bool,
) -> str:
    conversation = [{"role": role, "content": content} for role, content in messages]
    text = tokenizer.apply_chat_template(
        conversation,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )
    return str(text)


def _masked(
    line: int,
    tokenizer: Tokenizer,
    text: str,
    spans: Sequence[tuple[int, int]],
    *,
    special: bool,
    eos: int | None,
) -> TokenizedExample:
    encoded = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    if eos is not None:
        ids.append(eos)
        labels.append(eos)
    return TokenizedExample(line, ids, labels)


def _encode(tokenizer: Tokenizer, text: str, *, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _eos(tokenizer: Tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise DatasetError("tokenizer", ["the base model's tokenizer has no end-of-text token"])
    return int(tokenizer.eos_token_id)


def token_stats(examples: Sequence[TokenizedExample]) -> TokenStats:
    lengths = [len(example.input_ids) for example in examples]
    return TokenStats(
        examples=len(examples),
        total_tokens=sum(lengths),
        trained_tokens=sum(example.trained_tokens for example in examples),
        min_tokens=min(lengths),
        mean_tokens=statistics.fmean(lengths),
        max_tokens=max(lengths),
    )


def split_held_out(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, held out): every k-th example after a seeded shuffle; at least one of each
    when there are two or more examples, none held out when ``fraction`` is 0."""
    import random

    order = list(examples)
    random.Random(seed).shuffle(order)
    held = 0 if fraction <= 0 or len(order) < 2 else max(1, round(len(order) * fraction))
    held = min(held, len(order) - 1)
    return sorted(order[held:], key=_line), sorted(order[:held], key=_line)


def _line(example: Example) -> int:
    return example.line


@dataclass(frozen=True)
class PromptCase:
    """A held-out prompt for greedy answers before and after training."""

    line: int
    prompt: str
    expected: str
    special: bool  # whether tokenizing adds BOS (a rendered chat template has it already)

    def token_ids(self, tokenizer: Tokenizer) -> list[int]:
        return _encode(tokenizer, self.prompt, special=self.special)


def prompt_case(example: Example, tokenizer: Tokenizer) -> PromptCase:
    if example.prompt is not None and example.completion is not None:
        return PromptCase(example.line, example.prompt, example.completion, special=True)
    if example.messages:
        last = max(i for i, (role, _) in enumerate(example.messages) if role == "assistant")
        template = chat_template_of(tokenizer)
        prompt = _render(tokenizer, template, example.messages[:last], generation_prompt=True)
        return PromptCase(example.line, prompt, example.messages[last][1], special=False)
    text = example.text or ""
    cut = max(1, len(text) // 2)
    return PromptCase(example.line, text[:cut], text[cut:], special=True)
