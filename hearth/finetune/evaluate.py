"""Held-out loss and greedy answers, before and after training; the registration gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hearth.finetune.data import PromptCase, TokenizedExample
from hearth.finetune.train import batch_loss, collate


@dataclass(frozen=True)
class Answer:
    line: int
    prompt: str
    expected: str
    before: str
    after: str = ""


@dataclass
class EvalReport:
    loss_before: float | None  # None: no held-out examples
    loss_after: float | None = None
    answers: list[Answer] = field(default_factory=list)

    @property
    def improved(self) -> bool:
        if self.loss_before is None or self.loss_after is None:
            return False
        return self.loss_after < self.loss_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "improved": self.improved,
            "answers": [asdict(answer) for answer in self.answers],
        }


def held_out_loss(
    model: Any, examples: Sequence[TokenizedExample], pad_id: int, batch_size: int
) -> float | None:
    """Mean cross-entropy per labelled token (None for no examples)."""
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            summed, tokens = batch_loss(
                model, collate(examples[start : start + batch_size], pad_id)
            )
            total += float(summed)
            count += tokens
    model.train(was_training)
    return total / max(1, count)


def greedy_answers(
    model: Any, tokenizer: Any, cases: Sequence[PromptCase], max_new_tokens: int = 32
) -> list[str]:
    """Greedy continuations (up to EOS or ``max_new_tokens``), decoded."""
    return [
        tokenizer.decode(ids, skip_special_tokens=True).strip()
        for ids in greedy_tokens(model, tokenizer, cases, max_new_tokens)
    ]


def greedy_tokens(
    model: Any, tokenizer: Any, cases: Sequence[PromptCase], max_new_tokens: int
) -> list[list[int]]:
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for case in cases:
            ids = torch.tensor([case.token_ids(tokenizer)], device=device)
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                use_cache=True,
            )
            new = generated[0, ids.shape[1] :].tolist()
            out.append(_until_eos(new, tokenizer.eos_token_id))
    model.train(was_training)
    return out


def _until_eos(tokens: list[int], eos: int | None) -> list[int]:
    return tokens[: tokens.index(eos)] if eos is not None and eos in tokens else tokens
