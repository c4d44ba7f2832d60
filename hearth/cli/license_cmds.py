"""License commands: ``hearth license check``, ``hearth license list``, and the license gate
that ``pull`` and ``import`` pass through (``--accept-license``) and ``show --license`` prints.

Plain functions with typer annotations; ``main.py`` registers them. Model texts are untrusted,
so everything here prints without markup.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from hearth.cli.console import err, out
from hearth.config import get_settings
from hearth.errors import HearthError, LicenseDeniedError
from hearth.license import (
    INTENDED_USES,
    AcceptanceLog,
    Decision,
    ModelLicense,
    Policy,
    Subject,
    accept,
    admit,
    decide,
    license_report,
    load_catalogue,
    policy_of,
)
from hearth.license.policy import policy_from_file
from hearth.store import LocalModel, Store, find_entry


def check(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: every local model)")
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="A TOML file with a policy table (default: HEARTH_HOME/hearth.toml)"
        ),
    ] = None,
) -> None:
    """Check models against the organisation's license policy; exit status 0 only when every
    model is allowed (with or without obligations)."""
    settings = get_settings()
    policy = policy_from_file(policy_file) if policy_file else policy_of(settings)
    store = Store(settings)
    models = [store.resolve(name) for name in names] if names else store.list()
    log = AcceptanceLog(store.home)
    reports = [license_report(store, model, policy, log) for model in models]
    _plain(f"policy: {policy.origin}" + ("" if policy.declared else " (no [policy] table)"))
    for report in reports:
        _print_report_line(report)
    if any(report.decision >= Decision.REVIEW for report in reports):
        raise typer.Exit(1)


def list_licenses() -> None:
    """List the licenses Hearth knows, and the intended-use words a policy may name."""
    for terms in load_catalogue():
        _plain(f"{terms.id:<24}{terms.name} ({terms.version})")
    _plain("\nintended_uses vocabulary:")
    for word, meaning in INTENDED_USES.items():
        _plain(f"  {word:<24}{meaning}")


def print_model_license(store: Store, model: LocalModel) -> None:
    """``hearth show NAME --license``: the terms, evidence, decision, obligations, then text."""
    policy = policy_of(get_settings())
    report = license_report(store, model, policy, AcceptanceLog(store.home))
    for line in describe(report, policy):
        _plain(line)
    texts = store.licenses(model)
    _plain("")
    _plain("\n\n".join(texts) if texts else f"{model.name} has no license text in the store")


def describe(report: ModelLicense, policy: Policy) -> list[str]:
    terms = report.terms
    lines = [
        f"license       {report.label}: {terms.name} ({terms.version})",
        f"source        {terms.url or '-'}",
        f"confidence    {report.detection.confidence:.0%} ({report.detection.confidence_label})",
        "evidence",
        *(f"  {item.describe()}" for item in report.detection.evidence),
    ]
    profile = policy.origin if policy.declared else f"{policy.origin} (no policy table: default)"
    lines.append(f"decision      {report.decision.label} under {profile}")
    lines.append(f"  because     {report.verdict.reason} ({report.verdict.clause})")
    lines += [f"  also        {f.reason} ({f.clause})" for f in report.verdict.findings[1:]]
    if report.verdict.obligations:
        lines.append("obligations")
        lines += [f"  - {o.text} ({o.clause})" for o in report.verdict.obligations]
    record = report.detection.record
    if record and record.lineage:
        lines.append("lineage")
        lines += [f"  {s.kind} from {s.base} ({s.base_digest[:19]})" for s in record.lineage]
    if report.acceptance:
        lines.append(f"accepted      by {report.acceptance.describe()}")
    return lines


def refuse_before_pull(name: str) -> None:
    """A catalogue name's license is known before any download: refuse a denied one early."""
    entry = find_entry(name)
    policy = policy_of(get_settings())
    if entry is None or not policy.declared:
        return
    terms = load_catalogue().get(entry.license_id)
    verdict = decide(Subject(model=entry.name, terms=terms), policy)
    if verdict.decision is Decision.DENIED:
        raise LicenseDeniedError(
            f"license policy refuses {entry.name}: {terms.id}, denied: {verdict.reason} "
            f"({verdict.clause}); nothing was downloaded"
        )


def admit_model(store: Store, model: LocalModel, *, accepted: bool, existed: bool) -> None:
    """After a pull or import: record an acceptance if asked, then apply the policy. A refused
    model that was not there before is removed again; obligations are printed as warnings."""
    policy = policy_of(store.settings)
    if accepted:
        report = accept(store, model, getpass.getuser(), policy)
        err.print(f"accepted the {report.terms.id} terms of {model.name} (recorded)", markup=False)
    try:
        report = admit(store, model, policy)
    except LicenseDeniedError:
        if not existed:
            store.remove(str(model.name))
        raise
    if report.verdict.obligations and policy.declared:
        err.print(f"{model.name}: {report.terms.id}, {report.decision.label}:", markup=False)
        for obligation in report.verdict.obligations:
            err.print(f"  - {obligation.text} ({obligation.clause})", markup=False)


def model_exists(store: Store, name: str) -> bool:
    try:
        store.resolve(name)
    except HearthError:
        return False
    return True


def _print_report_line(report: ModelLicense) -> None:
    _plain(report.summary())
    for obligation in report.verdict.obligations:
        _plain(f"  - {obligation.text} ({obligation.clause})")


def _plain(text: str) -> None:
    out.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
