"""Training checkpoints that a crash or a full disk cannot spoil.

A checkpoint is a folder ``step-<N>`` holding the LoRA weights and the optimizer's state as
safetensors (no pickle, ever) and ``state.json`` (step, loss history). It is written under a
``.tmp-`` name, fsynced, renamed, and only then does ``latest`` (itself replaced atomically) point
at it; older checkpoints are removed after that. A failure at any point (ENOSPC included) removes
the half-written folder and leaves ``latest`` on the previous, complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

LATEST = "latest"
KEEP = 2  # complete checkpoints kept


@dataclass(frozen=True)
class Checkpoint:
    step: int
    losses: list[float]
    path: Path


def save_checkpoint(
    root: Path, step: int, losses: list[float], adapter: dict[str, Any], optimizer: Any
) -> Path:
    """Write checkpoint ``step`` under ``root``; on any error the previous one stays current."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    temp = root / f".tmp-step-{step}"
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        save_file(_contiguous(adapter), str(temp / "adapter.safetensors"))
        tensors, layout = _optimizer_parts(optimizer.state_dict())
        save_file(tensors, str(temp / "optimizer.safetensors"))
        _write_json(temp / "optimizer.json", layout)
        _write_json(temp / "state.json", {"step": step, "losses": losses})
        _fsync_tree(temp)
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        _write_json(root / LATEST, {"checkpoint": final.name})
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _prune(root, keep={final.name})
    return final


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The last complete checkpoint, or None."""
    try:
        name = json.loads((root / LATEST).read_text())["checkpoint"]
        path = root / str(name)
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Checkpoint(int(state["step"]), [float(x) for x in state["losses"]], path)


def load_adapter_weights(checkpoint: Checkpoint) -> dict[str, Any]:
    return load_file(str(checkpoint.path / "adapter.safetensors"))


def load_optimizer_state(checkpoint: Checkpoint) -> dict[str, Any]:
    tensors = load_file(str(checkpoint.path / "optimizer.safetensors"))
    layout = json.loads((checkpoint.path / "optimizer.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, field = key.split(".", 1)
        state.setdefault(int(index), {})[field] = tensor
    return {"state": state, "param_groups": layout["param_groups"]}


def _optimizer_parts(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors = {}
    for index, fields in state_dict["state"].items():
        for field, value in fields.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{index}.{field}"] = tensor.detach().contiguous()
    return tensors, {"param_groups": state_dict["param_groups"]}


def _contiguous(tensors: dict[str, Any]) -> dict[str, Any]:
    return {name: tensor.detach().contiguous() for name, tensor in tensors.items()}


def _write_json(path: Path, data: object) -> None:
    temp = path.with_name(f".tmp-{path.name}")
    with temp.open("w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        with file.open("rb") as handle:
            os.fsync(handle.fileno())


def _prune(root: Path, keep: set[str]) -> None:
    complete = sorted(
        (path for path in root.glob("step-*") if path.is_dir()),
        key=lambda path: int(path.name.removeprefix("step-")),
    )
    for path in complete[:-KEEP]:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
