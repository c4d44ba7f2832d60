"""The training loop: PEFT LoRA on a transformers model, with checkpoints and a clean stop.

A small loop of our own rather than ``Trainer``: it checkpoints without pickle, stops cleanly
between steps (Ctrl-C, a cancel from the API), resumes to the same data order, and reports each
step (loss, step time, time left). The data order is a function of (seed, epoch), so a resumed
run sees exactly the batches the interrupted one would have. The learning rate is constant.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import FinetuneError
from hearth.finetune import checkpoint as ckpt
from hearth.finetune.data import IGNORE, TokenizedExample
from hearth.finetune.options import ALL_LINEAR, TrainOptions


@dataclass(frozen=True)
class StepReport:
    step: int
    total_steps: int
    loss: float
    step_seconds: float
    eta_seconds: float


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    losses: list[float] = field(default_factory=list)
    stopped: bool = False  # stopped early (Ctrl-C, cancel); a checkpoint holds the progress
    resumed_from: int = 0


StopCheck = Callable[[], bool]
StepCallback = Callable[[StepReport], None]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 is slow elsewhere."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(options: TrainOptions) -> str:
    """bf16 on a GPU or a bf16-capable CPU, fp32 otherwise (QLoRA computes in bf16 anyway)."""
    if options.dtype != "auto":
        return options.dtype
    import torch

    return "bf16" if torch.cuda.is_available() or cpu_has_bf16() else "fp32"


def add_lora(model: Any, options: TrainOptions) -> Any:
    """Wrap ``model`` with a fresh LoRA adapter (output head and embeddings never targeted:
    Gemma ties the head to the embeddings, and llama.cpp could not apply it there)."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = (
        ALL_LINEAR if options.targets == (ALL_LINEAR,) else list(options.targets)
    )
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.lora_alpha,  # type: ignore[arg-type]  # PEFT takes floats too
        lora_dropout=options.dropout,
        target_modules=targets,
        use_rslora=options.rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    if options.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        with warnings.catch_warnings():  # transformers 5 deprecates a name PEFT still reads
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            return get_peft_model(model, config)
    except ValueError as error:
        raise FinetuneError(f"cannot add LoRA to this model: {error}") from None


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors; padding is masked in attention and labels (EOS keeps its label
    even when the pad token is EOS, because labels are built per example, not from ids)."""
    import torch

    width = max(len(example.input_ids) for example in examples)
    ids, labels, mask = [], [], []
    for example in examples:
        pad = width - len(example.input_ids)
        ids.append(example.input_ids + [pad_id] * pad)
        labels.append(example.labels + [IGNORE] * pad)
        mask.append([1] * len(example.input_ids) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def batch_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Sum of token cross-entropies over labelled tokens, and how many there were."""
    import torch

    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits
    labels = batch["labels"].to(device)[:, 1:]
    shifted = logits[:, :-1, :].float()
    total = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return total, int((labels != IGNORE).sum())


class Trainer:
    """Trains the LoRA weights of ``model`` on ``examples``; checkpoints go to ``checkpoints``."""

    def __init__(
        self,
        model: Any,
        examples: Sequence[TokenizedExample],
        options: TrainOptions,
        checkpoints: Path,
        pad_id: int,
    ) -> None:
        import torch

        self.model = model
        self.examples = list(examples)
        self.options = options
        self.checkpoints = checkpoints
        self.pad_id = pad_id
        self._losses: list[float] = []
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
        per_epoch = math.ceil(len(self.examples) / options.batch_size)
        self.batches_per_epoch = per_epoch
        by_epochs = math.ceil(options.epochs * per_epoch / options.grad_accum)
        self.total_steps = options.max_steps or by_epochs

    def resume(self) -> int:
        """Load the last checkpoint, if any; returns the step it reached (0 if none)."""
        from peft import set_peft_model_state_dict

        found = ckpt.latest_checkpoint(self.checkpoints)
        if found is None:
            return 0
        set_peft_model_state_dict(self.model, ckpt.load_adapter_weights(found))
        self.optimizer.load_state_dict(ckpt.load_optimizer_state(found))
        self._losses = list(found.losses)
        return found.step

    def run(
        self, should_stop: StopCheck, on_step: StepCallback, *, resume: bool = False
    ) -> TrainResult:
        self._losses = []
        start = self.resume() if resume else 0
        result = TrainResult(start, self.total_steps, self._losses, resumed_from=start)
        self.model.train()
        began = time.monotonic()
        for step in range(start, self.total_steps):
            step_began = time.monotonic()
            loss = self._step(step)
            self._losses.append(loss)
            result.steps = step + 1
            elapsed = time.monotonic() - began
            eta = elapsed / (step + 1 - start) * (self.total_steps - step - 1)
            on_step(
                StepReport(step + 1, self.total_steps, loss, time.monotonic() - step_began, eta)
            )
            last = step + 1 == self.total_steps
            if should_stop() and not last:
                self.save(step + 1)
                result.stopped = True
                return result
            if (step + 1) % self.options.checkpoint_every == 0 or last:
                self.save(step + 1)
        return result

    def save(self, step: int) -> Path:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.model, save_embedding_layers=False)
        return ckpt.save_checkpoint(self.checkpoints, step, self._losses, state, self.optimizer)

    def _step(self, step: int) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        batches = [self._batch(step * self.options.grad_accum + i) for i in range(self._accum())]
        counts = [sum(ex.trained_tokens for ex in batch) for batch in batches]
        total_tokens = max(1, sum(counts))
        loss_sum = 0.0
        for batch in batches:
            summed, _ = batch_loss(self.model, collate(batch, self.pad_id))
            (summed / total_tokens).backward()
            loss_sum += float(summed.detach())
        self.optimizer.step()
        return loss_sum / total_tokens

    def _accum(self) -> int:
        return self.options.grad_accum

    def _batch(self, micro: int) -> list[TokenizedExample]:
        import torch

        epoch, index = divmod(micro, self.batches_per_epoch)
        generator = torch.Generator().manual_seed(self.options.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.examples), generator=generator).tolist()
        size = self.options.batch_size
        return [self.examples[i] for i in order[index * size : (index + 1) * size]]
