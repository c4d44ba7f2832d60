"""The lineage record stored with a fine-tune (``MediaType.LINEAGE`` layer, JSON).

It says what the adapter was made from and how: the base model (name, manifest digest, weights
digest, license id — the fine-tune stays under the base's terms), the data (path, sha256, example
counts), the hyperparameters, the library versions, and the evaluation before and after.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from hearth.finetune.options import JobSpec
from hearth.store import LocalModel

LIBRARIES = ("hearth-llm", "torch", "transformers", "peft", "bitsandbytes", "gguf", "datasets")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def lineage_record(
    spec: JobSpec,
    base: LocalModel,
    *,
    dataset_digest: str,
    counts: dict[str, int],
    dtype: str,
    steps: int,
    evaluation: dict[str, Any],
    job_id: str,
) -> dict[str, Any]:
    return {
        "kind": "lora",
        "job": job_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {
            "name": str(base.name),
            "manifest_digest": base.manifest_digest,
            "model_digest": "sha256:" + base.model_path.name.removeprefix("sha256-"),
            "architecture": base.info.architecture,
            "license_id": base.info.license_id,
        },
        "dataset": {
            "path": spec.data,
            "digest": dataset_digest,
            "eval_path": spec.eval_data,
            **counts,
        },
        "hyperparameters": {**spec.options.to_dict(), "dtype": dtype, "steps": steps},
        "libraries": library_versions(),
        "evaluation": evaluation,
        "forced": spec.force,
    }


def lineage_json(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True)
