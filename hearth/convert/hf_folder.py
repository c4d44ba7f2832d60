"""Reading a Hugging Face model folder: config, safetensors weights, model card, pooling.

Only JSON, text and safetensors files are read. Pickle files (``.bin``, ``.pt``, ``.ckpt``) can
run arbitrary code when loaded, so they are never opened: a folder whose weights exist only in
that form is refused, and one that has both is read from its safetensors files alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from hearth.errors import ConversionError

CONFIG_FILE = "config.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
MODEL_CARD = "README.md"
POOLING_CONFIG = "1_Pooling/config.json"
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Float types Hearth reads from safetensors. numpy has no bfloat16: BF16 is widened to F32
# from its raw bits (a bfloat16 is the top half of a float32), see _read_bf16.
READABLE_DTYPES = frozenset({"BF16", "F16", "F32", "F64"})
_HEADER_SIZE_BYTES = 8  # a safetensors file starts with its JSON header's length (u64, LE)


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of a safetensors file, known by its header (its data is not read yet)."""

    file: Path
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors' name: F32, F16, BF16, I64, ...


@dataclass(frozen=True)
class HFFolder:
    root: Path
    config: Mapping[str, Any]
    tensors: tuple[SourceTensor, ...]

    @property
    def architecture(self) -> str:
        """The class the config names (``BertModel``), or its ``model_type`` if it names none."""
        names = self.config.get("architectures")
        if isinstance(names, list) and names and isinstance(names[0], str):
            return names[0]
        return str(self.config.get("model_type", "unknown"))


def read_folder(root: Path) -> HFFolder:
    """The folder's config and the header of every safetensors tensor; refuses pickle weights."""
    if not root.is_dir():
        raise ConversionError(f"{root} is not a directory")
    config = read_json(root / CONFIG_FILE)
    files = weight_files(root)
    return HFFolder(root, config, tuple(_list_tensors(files)))


def read_json(path: Path, *, required: bool = True) -> dict[str, Any]:
    """A JSON object from ``path``; {} when it is absent and not ``required``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return {}
        raise ConversionError(f"{path.parent} has no {path.name}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} does not hold a JSON object")
    return data


def weight_files(root: Path) -> list[Path]:
    """The safetensors files holding the weights: one file, or the shards its index names."""
    if (root / WEIGHTS_INDEX).is_file():
        return _shards(root)
    if (root / SINGLE_WEIGHTS).is_file():
        return [root / SINGLE_WEIGHTS]
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ConversionError(
            f"{root} holds its weights only as pickle files ({', '.join(pickles)}); Hearth never "
            "loads pickle files because loading one can run arbitrary code. Ask the publisher "
            "for safetensors weights (model.safetensors)"
        )
    raise ConversionError(f"{root} has no {SINGLE_WEIGHTS} and no {WEIGHTS_INDEX}")


def read_tensor(tensor: SourceTensor) -> np.ndarray[Any, Any]:
    """The tensor's data as a numpy array (one tensor in memory at a time); BF16 becomes F32."""
    if tensor.dtype == "BF16":
        return _read_bf16(tensor)
    with _open(tensor.file) as handle:
        array: np.ndarray[Any, Any] = handle.get_tensor(tensor.name)
    return array


def card_license(root: Path) -> str | None:
    """``license`` from the model card's YAML front matter (``license_name`` when it is 'other')."""
    fields = card_front_matter(root)
    license_id = fields.get("license")
    if license_id == "other" and fields.get("license_name"):
        return fields["license_name"]
    return license_id or None


def card_front_matter(root: Path) -> dict[str, str]:
    """The top-level ``key: value`` scalars of README.md's front matter (lists are skipped)."""
    lines = read_card(root).splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, sep, value = line.partition(":")
        if sep and line[:1].strip() and not key.startswith("-"):
            fields[key.strip()] = value.strip().strip("'\"")
    return fields


def read_card(root: Path) -> str:
    """The model card's text, or '' when the folder has none."""
    try:
        return (root / MODEL_CARD).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def read_license_file(root: Path) -> str | None:
    """The text of the folder's LICENSE file, if it has one."""
    for name in LICENSE_FILES:
        path = root / name
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return None


def sentence_pooling(root: Path) -> str | None:
    """The pooling a sentence-transformers folder declares: 'mean', 'cls', 'last', or None."""
    config = read_json(root / POOLING_CONFIG, required=False)
    for mode, key in (
        ("mean", "pooling_mode_mean_tokens"),
        ("cls", "pooling_mode_cls_token"),
        ("last", "pooling_mode_lasttoken"),
    ):
        if config.get(key) is True:
            return mode
    named = config.get("pooling_mode")  # newer sentence-transformers spell it this way
    return named if isinstance(named, str) else None


def _shards(root: Path) -> list[Path]:
    weight_map = read_json(root / WEIGHTS_INDEX).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConversionError(f"{root / WEIGHTS_INDEX} has no weight_map")
    names = sorted(set(weight_map.values()))
    for name in names:
        # The index is untrusted: a shard must be a plain file name inside the folder.
        if (
            not isinstance(name, str)
            or Path(name).name != name
            or not name.endswith(".safetensors")
        ):
            raise ConversionError(f"{root / WEIGHTS_INDEX} names an invalid shard: {name!r}")
        if not (root / name).is_file():
            raise ConversionError(f"{root} is missing the shard {name}")
    return [root / name for name in names]


def _list_tensors(files: list[Path]) -> Iterator[SourceTensor]:
    seen: set[str] = set()
    for path in files:
        with _open(path) as handle:
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                if name in seen:
                    raise ConversionError(f"tensor {name} appears in more than one shard")
                seen.add(name)
                piece = handle.get_slice(name)
                yield SourceTensor(path, name, tuple(piece.get_shape()), piece.get_dtype())


def _read_bf16(tensor: SourceTensor) -> np.ndarray[Any, Any]:
    begin, end = _data_offsets(tensor)
    count = int(np.prod(tensor.shape, dtype=np.int64))
    if end - begin != 2 * count:
        raise ConversionError(f"{tensor.file}: tensor {tensor.name} has the wrong data size")
    raw = np.fromfile(tensor.file, dtype="<u2", count=count, offset=begin)
    if raw.size != count:
        raise ConversionError(f"{tensor.file} is truncated inside tensor {tensor.name}")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(tensor.shape)


def _data_offsets(tensor: SourceTensor) -> tuple[int, int]:
    """The tensor's byte range in its file, from the safetensors header (safe_open checked it)."""
    with tensor.file.open("rb") as handle:
        size = int.from_bytes(handle.read(_HEADER_SIZE_BYTES), "little")
        header = json.loads(handle.read(size))
    begin, end = header[tensor.name]["data_offsets"]
    start = _HEADER_SIZE_BYTES + size
    return start + int(begin), start + int(end)


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    from hearth.store.safetensors_check import check_safetensors  # late: store imports convert

    check_safetensors(path)  # bounded header check before the library maps the file
    try:
        with safe_open(str(path), framework="np") as handle:
            yield handle
    except SafetensorError as error:
        raise ConversionError(f"{path} is not a valid safetensors file: {error}") from None
