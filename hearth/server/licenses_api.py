"""License routes for the dashboard, and the license checks other routes make.

- ``GET /api/licenses`` (``?model=NAME`` for one): the policy, the catalogue, and per model its
  license, evidence, decision with the clause, obligations, attribution and lineage.
- ``POST /api/licenses/accept`` ``{"model": NAME}``: records an acceptance of the model's terms
  in the name of the API key that asks (``local`` when keys are not in use).
- :func:`check_license` (called by ``deps.requested_model``): a model the policy denies is
  refused with 403 and the clause, before it is loaded.
- :func:`license_card`: the ``license`` field of ``/v1/models`` entries (attribution included,
  e.g. "Built with Llama").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from hearth.config import Settings
from hearth.errors import ModelNotFoundError, PermissionDeniedError
from hearth.license import (
    AcceptanceLog,
    ModelLicense,
    Policy,
    accept,
    check_serving,
    license_report,
    load_catalogue,
    policy_of,
)
from hearth.server.auth import check_model, key_name
from hearth.store import LocalModel, Store

router = APIRouter(prefix="/api/licenses")
LOCAL_USER = "local (no API key)"


class AcceptRequest(BaseModel):
    model: str = Field(min_length=1)


@router.get("")
async def licenses(request: Request, model: str | None = None) -> dict[str, Any]:
    store, policy = _store(request), _policy(request)
    if model is not None:
        check_model(request, model)
        models = [store.resolve(model)]
    else:
        models = [m for m in store.list() if _visible(request, str(m.name))]
    log = AcceptanceLog(store.home)
    return {
        "policy": policy.as_dict(),
        "catalogue": [
            {"id": t.id, "name": t.name, "version": t.version, "url": t.url, "kind": t.kind}
            for t in load_catalogue()
        ],
        "models": [license_report(store, m, policy, log).to_dict() for m in models],
    }


@router.post("/accept")
async def accept_license(body: AcceptRequest, request: Request) -> dict[str, Any]:
    check_model(request, body.model)
    store = _store(request)
    who = key_name(request) or LOCAL_USER
    return accept(store, store.resolve(body.model), who, _policy(request)).to_dict()


def check_license(request: Request, name: str) -> None:
    """Refuse (403, with the clause) a model the license policy denies."""
    policy = _policy(request)
    if not policy.declared:
        return
    store = _store(request)
    try:
        model = store.resolve(name)
    except ModelNotFoundError:
        return  # the route reports a missing model as it always does
    check_serving(store, model, policy)


def license_card(request: Request, model: LocalModel) -> dict[str, Any]:
    """What ``/v1/models`` says about a model's license (clients ignore unknown fields)."""
    report: ModelLicense = license_report(
        _store(request), model, _policy(request), AcceptanceLog(_store(request).home)
    )
    return {
        "id": report.terms.id,
        "name": report.terms.name,
        "url": report.terms.url,
        "attribution": report.attribution,
        "decision": report.decision.label,
        "clause": report.verdict.clause,
    }


def _store(request: Request) -> Store:
    store: Store = request.app.state.manager.store
    return store


def _policy(request: Request) -> Policy:
    settings: Settings = request.app.state.settings
    return policy_of(settings)


def _visible(request: Request, name: str) -> bool:
    try:
        check_model(request, name)
    except PermissionDeniedError:
        return False
    return True
