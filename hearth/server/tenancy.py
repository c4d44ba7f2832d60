"""Prefix-cache isolation between API keys.

Reusing another tenant's cached prefix makes a prompt answer measurably faster, and that timing
tells a client what someone else asked (the class of vLLM CVE-2025-25183). The engine shares
cached prefixes only between requests with the same ``cache_key``; this module gives each key
its own: :func:`enter` (from authentication) records the request's key, :func:`isolated` (from
``deps.lease_and_start``) makes the model view pass it to the engine. Without keys every request
belongs to one tenant, the machine's owner, and shares the cache.
"""

from __future__ import annotations

from contextvars import ContextVar

from hearth.engine.engine import Generation
from hearth.engine.llm import ModelView
from hearth.engine.sampling import SamplingParams
from hearth.server.keys import KeyInfo

_tenant: ContextVar[str] = ContextVar("hearth_tenant", default="")


def enter(key: KeyInfo | None) -> None:
    """This request's tenant: its key (the prefix is unique; names may be reused)."""
    _tenant.set(f"key:{key.prefix}" if key is not None else "")


def current() -> str:
    return _tenant.get()


def isolated(view: ModelView) -> ModelView:
    """``view``, whose requests share cached prefixes only with the same tenant's."""
    tenant = current()
    return TenantView(view, tenant) if tenant else view


class TenantView(ModelView):
    """A model view whose ``generate`` tags requests with the tenant's cache key."""

    def __init__(self, view: ModelView, tenant: str) -> None:  # a wrapper, as MeteredView
        self.__dict__.update(view.__dict__)
        self._view = view
        self._tenant = tenant

    def generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        *,
        n: int = 1,
        cache_key: str = "",
        timeout: float | None = None,
    ) -> list[Generation]:
        key = f"{self._tenant}\0{cache_key}" if cache_key else self._tenant
        return self._view.generate(tokens, params, n=n, cache_key=key, timeout=timeout)
