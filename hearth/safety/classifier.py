"""An optional safety classifier: a guard model served by Hearth itself.

Any model that answers "safe" or "unsafe" with categories can be used. Two prompt formats:

- ``llama-guard`` (Llama Guard 3): a model with a chat template gets the conversation through
  it (Llama Guard's own template writes its instructions and category list); a model without
  one gets the same instructions written here. The answer is ``safe``, or ``unsafe`` and a
  line of categories (``S1,S10``).
- ``shieldgemma`` (ShieldGemma): the policy question is written here as one user turn; the
  answer is ``Yes`` (the text violates the policy) or ``No``.

The answer is constrained by a grammar to the format's verdicts, sampled greedily, at most 16
tokens: a guard model can only give a verdict the parser understands. The request goes through
the :class:`~hearth.engine.manager.ModelManager` like any other (it loads, stays warm and is
unloaded under the same memory budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage

LLAMA_GUARD_GRAMMAR = (
    'root ::= "safe" | "unsafe" "\\n" category ("," category)*\ncategory ::= "S" [1-9] [0-9]?\n'
)
SHIELDGEMMA_GRAMMAR = 'root ::= "Yes" | "No"\n'

_LLAMA_GUARD_CATEGORIES = (
    "S1: Violent Crimes. S2: Non-Violent Crimes. S3: Sex Crimes. S4: Child Exploitation. "
    "S5: Defamation. S6: Specialized Advice. S7: Privacy. S8: Intellectual Property. "
    "S9: Indiscriminate Weapons. S10: Hate. S11: Self-Harm. S12: Sexual Content. "
    "S13: Elections. S14: Code Interpreter Abuse."
)


@dataclass(frozen=True)
class Verdict:
    safe: bool
    categories: tuple[str, ...] = ()


class Classifier(Protocol):
    async def classify(self, conversation: Sequence[ChatMessage]) -> Verdict: ...


def parse_verdict(answer: str, format: str) -> Verdict:
    """The verdict in a guard model's answer; anything unreadable counts as unsafe."""
    text = answer.strip()
    if format == "shieldgemma":
        first = text.split(maxsplit=1)[0].lower() if text else ""
        return Verdict(first == "no", () if first == "no" else ("policy",))
    lines = text.splitlines()
    if lines and lines[0].strip().lower() == "safe":
        return Verdict(True)
    categories = (
        tuple(c.strip() for c in lines[1].split(",") if c.strip()) if len(lines) > 1 else ()
    )
    return Verdict(False, categories or ("unsafe",))


def llama_guard_prompt(conversation: Sequence[ChatMessage]) -> str:
    """Llama Guard 3's instructions, for a guard model without its own chat template."""
    last = "Agent" if conversation and conversation[-1].role == "assistant" else "User"
    turns = "\n\n".join(
        f"{'Agent' if m.role == 'assistant' else 'User'}: {m.content}" for m in conversation
    )
    return (
        f"Task: Check if there is unsafe content in '{last}' messages in conversations "
        "according to our safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{_LLAMA_GUARD_CATEGORIES}\n"
        "<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{turns}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {last} message in the above "
        "conversation:\n- First line must read 'safe' or 'unsafe'.\n"
        "- If unsafe, a second line must include a comma-separated list of violated categories."
    )


def shieldgemma_prompt(conversation: Sequence[ChatMessage]) -> str:
    last = conversation[-1] if conversation else ChatMessage("user", "")
    who = "AI response" if last.role == "assistant" else "human question"
    return (
        "You are a policy expert trying to help determine whether a "
        f"{who} is in violation of the defined safety policies.\n\n"
        f"<start_of_turn>\n{last.content}\n<end_of_turn>\n\n"
        "Our safety principle is defined in the below:\n\n"
        '* "No Dangerous Content", "No Harassment", "No Hate Speech", '
        '"No Sexually Explicit Information".\n\n'
        f"Does the {who} violate the above principle? Your answer must start with "
        "'Yes' or 'No'."
    )


class ModelClassifier:
    """A guard model in the store, run through the model manager."""

    def __init__(self, manager: ModelManager, model: str, format: str = "llama-guard") -> None:
        self.manager = manager
        self.model = model
        self.format = format

    async def classify(self, conversation: Sequence[ChatMessage]) -> Verdict:
        answer = await asyncio.to_thread(self._answer, list(conversation))
        return parse_verdict(answer, self.format)

    def _answer(self, conversation: list[ChatMessage]) -> str:
        grammar = SHIELDGEMMA_GRAMMAR if self.format == "shieldgemma" else LLAMA_GUARD_GRAMMAR
        params = SamplingParams(temperature=0.0, max_tokens=16, grammar=grammar).chosen(
            frozenset({"temperature", "max_tokens", "grammar"})
        )
        with self.manager.acquire(self.model) as llm:
            if self.format == "llama-guard" and llm.chat_template is not None:
                tokens = llm.chat_tokens(conversation)
            else:
                prompt = (
                    shieldgemma_prompt(conversation)
                    if self.format == "shieldgemma"
                    else llama_guard_prompt(conversation)
                )
                tokens = llm.tokenizer.tokenize(prompt)
            (generation,) = llm.generate(tokens, params)
            return generation.text()
