"""The model store: names, OCI manifests, content-addressed blobs, sources. See docs/STORE.md."""

from hearth.store.blobs import Blob, BlobStore, Progress
from hearth.store.catalogue import CATALOGUE, CatalogueEntry, PackageFormat, find_entry
from hearth.store.digest import DIGEST_RE, blob_filename, validate_digest
from hearth.store.gguf_meta import GGUFInfo, read_gguf_info
from hearth.store.manifest import Descriptor, Manifest, MediaType, ModelConfig
from hearth.store.names import ModelName, parse_name
from hearth.store.store import LocalModel, ModelInfo, Store

__all__ = [
    "CATALOGUE",
    "DIGEST_RE",
    "Blob",
    "BlobStore",
    "CatalogueEntry",
    "Descriptor",
    "GGUFInfo",
    "LocalModel",
    "Manifest",
    "MediaType",
    "ModelConfig",
    "ModelInfo",
    "ModelName",
    "PackageFormat",
    "Progress",
    "Store",
    "blob_filename",
    "find_entry",
    "parse_name",
    "read_gguf_info",
    "validate_digest",
]
