"""Fine-tuning options, validated on creation (an out-of-range value names its parameter)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import ValidationError

METHODS = ("lora", "qlora")
DTYPES = ("auto", "bf16", "fp32")
ALL_LINEAR = "all-linear"  # PEFT: every linear layer but the output head


@dataclass(frozen=True)
class TrainOptions:
    method: str = "lora"
    rank: int = 16
    alpha: float | None = None  # None: 2 × rank
    dropout: float = 0.05
    targets: tuple[str, ...] = (ALL_LINEAR,)
    epochs: int = 3
    max_steps: int = 0  # 0: as many as the epochs take
    lr: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 1024
    eval_split: float = 0.1
    checkpoint_every: int = 50
    seed: int = 0
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    rslora: bool = False
    eval_prompts: int = 5  # held-out prompts answered greedily before and after

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("dtype", self.dtype, DTYPES)
        _range("rank", self.rank, 1, 1024)
        if self.alpha is not None:
            _range("alpha", self.alpha, 1e-6, 1e6)
        _range("dropout", self.dropout, 0.0, 0.9)
        _range("epochs", self.epochs, 1, 10_000)
        _range("max_steps", self.max_steps, 0, 10_000_000)
        if not 0 < self.lr <= 0.1:
            raise ValidationError("lr", self.lr, "must be above 0 and at most 0.1")
        _range("batch_size", self.batch_size, 1, 4096)
        _range("grad_accum", self.grad_accum, 1, 4096)
        _range("max_seq_len", self.max_seq_len, 8, 1_048_576)
        _range("eval_split", self.eval_split, 0.0, 0.5)
        _range("checkpoint_every", self.checkpoint_every, 1, 10_000_000)
        _range("eval_prompts", self.eval_prompts, 0, 100)
        if not self.targets or any(not target.strip() for target in self.targets):
            raise ValidationError("targets", self.targets, "name at least one module")

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.0 * self.rank

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        known = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        if "targets" in known:
            known["targets"] = tuple(known["targets"])
        return cls(**known)


@dataclass(frozen=True)
class JobSpec:
    """Everything a fine-tuning job needs, as stored in its folder (``spec.json``)."""

    base: str
    data: str  # a JSONL file or a dataset folder, on the machine that trains
    name: str
    options: TrainOptions = field(default_factory=TrainOptions)
    eval_data: str | None = None
    force: bool = False  # register even without improvement, and replace an existing name
    merge: bool = False  # merge the adapter into the base: a full model, not an adapter
    quantize: str | None = None  # with merge: quantize the merged model (Q4_K_M, Q8_0, ...)

    def __post_init__(self) -> None:
        if self.quantize is None:
            return
        if not self.merge:
            raise ValidationError(
                "quantize", self.quantize, "needs --merge: only a merged model is quantized"
            )
        from hearth.store.quantize import parse_quant_type

        try:
            canonical, _ = parse_quant_type(self.quantize)
        except ValidationError as error:
            raise ValidationError("quantize", self.quantize, error.reason) from None
        object.__setattr__(self, "quantize", canonical)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "data": self.data,
            "name": self.name,
            "options": self.options.to_dict(),
            "eval_data": self.eval_data,
            "force": self.force,
            "merge": self.merge,
            "quantize": self.quantize,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        return cls(
            base=str(data["base"]),
            data=str(data["data"]),
            name=str(data["name"]),
            options=TrainOptions.from_dict(dict(data.get("options") or {})),
            eval_data=data.get("eval_data"),
            force=bool(data.get("force", False)),
            merge=bool(data.get("merge", False)),
            quantize=data.get("quantize"),
        )

    @property
    def data_path(self) -> Path:
        return Path(self.data).expanduser()


def _choice(param: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValidationError(param, value, f"must be one of {', '.join(choices)}")


def _range(param: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(param, value, f"must be between {low:g} and {high:g}")
