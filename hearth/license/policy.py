"""An organisation's intended use (``[policy]`` in hearth.toml) checked against a license.

:func:`decide` is pure: terms, what detection found, the policy, the model's name. Every rule
that fires gives a :class:`Finding` with the clause behind it; the worst finding is the
decision. Obligations (attribution, notices, naming, use policies) do not block: they make the
decision "allowed with obligations" and are listed. ``allow`` overrides the license's verdict
(the organisation has, say, a separate license from Meta); ``deny`` overrides everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from hearth.config import load_policy_table
from hearth.errors import ConfigError, InvalidNameError
from hearth.license.terms import LicenseTerms, OutputTraining, Trigger
from hearth.license.uses import check_uses
from hearth.store.names import parse_name

POLICY_KEYS = (
    "commercial_use",
    "monthly_active_users",
    "intended_uses",
    "distribute_derivatives",
    "allow",
    "deny",
)
POLICY_CLAUSE = "hearth.toml policy"  # no brackets: the CLI prints errors with rich markup


class Decision(IntEnum):
    """Ordered: the worst finding wins."""

    ALLOWED = 0
    OBLIGATIONS = 1
    REVIEW = 2
    DENIED = 3

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Decision.ALLOWED: "allowed",
    Decision.OBLIGATIONS: "allowed with obligations",
    Decision.REVIEW: "needs review",
    Decision.DENIED: "denied",
}


@dataclass(frozen=True)
class Policy:
    commercial_use: bool = True
    monthly_active_users: int = 0
    intended_uses: tuple[str, ...] = ()
    distribute_derivatives: bool = False
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    origin: str = "default policy"  # where it came from, for messages
    declared: bool = False  # False: no [policy] table, so nothing is enforced

    @classmethod
    def from_table(cls, table: Mapping[str, Any], origin: str) -> Policy:
        """Validate a ``[policy]`` table; ConfigError names ``origin`` and the key."""
        where = f"{origin}: policy."
        unknown = sorted(set(table) - set(POLICY_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}{unknown[0]} is not a policy key (known: {', '.join(POLICY_KEYS)})"
            )
        try:
            return cls(
                commercial_use=_bool(table, "commercial_use", True),
                monthly_active_users=_count(table, "monthly_active_users"),
                intended_uses=tuple(check_uses(_list(table, "intended_uses"), "intended_uses")),
                distribute_derivatives=_bool(table, "distribute_derivatives", False),
                allow=tuple(_list(table, "allow")),
                deny=tuple(_list(table, "deny")),
                origin=origin,
                declared=bool(table),
            )
        except ValueError as error:
            raise ConfigError(f"{where}{error}") from None

    def lists(self, key: str, model: str, license_id: str) -> bool:
        """Whether ``allow`` or ``deny`` names the model (any spelling of its name) or its
        license id."""
        listed = self.allow if key == "allow" else self.deny
        entries = {entry.lower() for entry in listed} | {_canonical(entry) for entry in listed}
        return bool(entries & {_canonical(model), license_id.lower()})

    def as_dict(self) -> dict[str, Any]:
        return {key: _plain(getattr(self, key)) for key in POLICY_KEYS} | {
            "origin": self.origin,
            "declared": self.declared,
        }


@dataclass(frozen=True)
class Finding:
    decision: Decision
    reason: str
    clause: str


@dataclass(frozen=True)
class Obligation:
    kind: str  # attribution, notice, license, naming, use-policy, derivatives, outputs
    text: str
    clause: str


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    clause: str
    findings: tuple[Finding, ...] = ()
    obligations: tuple[Obligation, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Subject:
    """What a decision is about: the model, and what detection found."""

    model: str
    terms: LicenseTerms
    conflicting: tuple[str, ...] = ()  # license ids the evidence names, if it disagrees
    unknown_ids: tuple[str, ...] = ()
    derivative: bool = False
    accepted_by: str | None = None  # "alice at 2026-...": a recorded acceptance of these terms


def decide(subject: Subject, policy: Policy) -> Verdict:
    terms = subject.terms
    if policy.lists("deny", subject.model, terms.id):
        return Verdict(Decision.DENIED, "listed in deny", f"{POLICY_CLAUSE}.deny")
    findings = _findings(subject, policy)
    obligations = tuple(_obligations(subject, policy))
    if policy.lists("allow", subject.model, terms.id):
        kept = Decision.OBLIGATIONS if obligations else Decision.ALLOWED
        return Verdict(kept, "listed in allow", f"{POLICY_CLAUSE}.allow", findings, obligations)
    if subject.accepted_by:
        note = f"accepted by {subject.accepted_by}"
        findings = tuple(
            Finding(Decision.OBLIGATIONS, f"{f.reason} ({note})", f.clause)
            if f.decision is Decision.REVIEW
            else f
            for f in findings
        )
    return _verdict(terms, findings, obligations)


def _verdict(
    terms: LicenseTerms, findings: tuple[Finding, ...], obligations: tuple[Obligation, ...]
) -> Verdict:
    worst = max((f.decision for f in findings), default=Decision.ALLOWED)
    if worst > Decision.OBLIGATIONS:
        first = next(f for f in findings if f.decision is worst)
        return Verdict(worst, first.reason, first.clause, findings, obligations)
    if worst is Decision.OBLIGATIONS:  # a review someone accepted: say so first
        first = next(f for f in findings if f.decision is worst)
        return Verdict(worst, first.reason, first.clause, findings, obligations)
    if obligations:
        clause = obligations[0].clause
        return Verdict(Decision.OBLIGATIONS, "obligations apply", clause, findings, obligations)
    return Verdict(
        Decision.ALLOWED, f"{terms.name} permits this use", terms.commercial_use.clause, findings
    )


def _findings(subject: Subject, policy: Policy) -> tuple[Finding, ...]:
    terms = subject.terms
    found: list[Finding] = []
    if len(subject.conflicting) > 1:
        named = " vs ".join(subject.conflicting)
        found.append(Finding(Decision.REVIEW, f"contradicting evidence: {named}", "detection"))
    if terms.is_unknown:
        ids = ", ".join(repr(i) for i in subject.unknown_ids)
        why = f"license {ids} is not in the catalogue" if ids else "no license found"
        found.append(Finding(Decision.REVIEW, why, "detection"))
        return tuple(found)
    found += _use_findings(terms, policy)
    found += _naming_findings(subject, policy)
    return tuple(found)


def _use_findings(terms: LicenseTerms, policy: Policy) -> list[Finding]:
    found = []
    uses = set(policy.intended_uses)
    if policy.commercial_use and terms.commercial_use.allowed is False:
        found.append(Finding(Decision.DENIED, "commercial use not permitted", _c(terms, "c")))
    production = policy.commercial_use or "customer_facing" in uses
    if production and terms.production_use.allowed is False and terms.commercial_use.allowed:
        found.append(Finding(Decision.DENIED, "production use not permitted", _c(terms, "p")))
    if "customer_facing" in uses and terms.hosting.allowed is False:
        reason = f"hosted use needs a separate license: {terms.hosting.note}"
        found.append(Finding(Decision.REVIEW, reason, terms.hosting.clause))
    threshold = terms.user_threshold
    if threshold and policy.monthly_active_users > threshold.monthly_active_users:
        reason = (
            f"{policy.monthly_active_users:,} monthly active users exceed "
            f"{threshold.monthly_active_users:,}: a separate license is required"
        )
        found.append(Finding(Decision.DENIED, reason, threshold.clause))
    restrictions = terms.use_restrictions
    if restrictions:
        for use in policy.intended_uses:
            if use in restrictions.prohibited:
                reason = f"intended use {use!r} is prohibited by {restrictions.policy}"
                found.append(Finding(Decision.DENIED, reason, restrictions.clause))
            elif use in restrictions.review:
                reason = f"intended use {use!r} is restricted by {restrictions.policy}"
                found.append(Finding(Decision.REVIEW, reason, restrictions.clause))
    if "synthetic_data" in uses and terms.output_training.allowed is OutputTraining.NO:
        reason = f"outputs may not train other models: {terms.output_training.note}"
        found.append(Finding(Decision.DENIED, reason, terms.output_training.clause))
    return found


def _naming_findings(subject: Subject, policy: Policy) -> list[Finding]:
    naming = subject.terms.derivative_naming
    if not (naming and subject.derivative and policy.distribute_derivatives):
        return []
    short = subject.model.rsplit("/", 1)[-1].replace("-", " ").replace("_", " ").lower()
    if short.startswith(naming.prefix.lower()):
        return []
    reason = f"a distributed derivative's name must begin with {naming.prefix!r}"
    return [Finding(Decision.REVIEW, reason, naming.clause)]


def _obligations(subject: Subject, policy: Policy) -> list[Obligation]:
    terms = subject.terms
    if terms.is_unknown:
        return []
    uses = set(policy.intended_uses)
    distributes = policy.distribute_derivatives
    offers = "customer_facing" in uses
    derives = distributes or "fine_tuning" in uses or "synthetic_data" in uses
    found = []
    if terms.use_restrictions:
        r = terms.use_restrictions
        link = f" ({r.policy_url})" if r.policy_url else ""
        found.append(Obligation("use-policy", f"comply with the {r.policy}{link}", r.clause))
    attribution = terms.attribution
    if attribution and (distributes or (offers and attribution.when is Trigger.PRODUCT)):
        text = f"show {attribution.text!r} {attribution.where}"
        found.append(Obligation("attribution", text, attribution.clause))
    if distributes:
        found += _distribution_obligations(terms)
    if derives and terms.derivative_naming:
        n = terms.derivative_naming
        found.append(Obligation("naming", n.rule, n.clause))
    if derives and terms.derivatives.inherit:
        text = f"derivatives stay under the {terms.name}"
        text += f" ({terms.derivatives.note})" if terms.derivatives.note else ""
        found.append(Obligation("derivatives", text, terms.derivatives.clause))
    if "synthetic_data" in uses and terms.output_training.allowed is OutputTraining.CONDITIONAL:
        out = terms.output_training
        found.append(Obligation("outputs", out.note or "conditions apply", out.clause))
    return found


def _distribution_obligations(terms: LicenseTerms) -> list[Obligation]:
    d = terms.distribution
    found = []
    if d.include_license:
        text = d.requirements or f"include the {terms.name} with every copy"
        found.append(Obligation("license", text, d.clause))
    if d.notice:
        found.append(Obligation("notice", f'ship a "Notice" file saying: {d.notice}', d.clause))
    return found


def _c(terms: LicenseTerms, which: str) -> str:
    permission = terms.commercial_use if which == "c" else terms.production_use
    return permission.clause


def policy_from_file(path: Path) -> Policy:
    """The ``[policy]`` table of a hearth.toml-style file (``--policy FILE``)."""
    if not path.is_file():
        raise ConfigError(f"policy file {path} does not exist")
    return Policy.from_table(load_policy_table(path), str(path))


def _canonical(name: str) -> str:
    """A model name in full (``gemma3:270m`` → ``hearth.local/library/gemma3:270m``)."""
    try:
        parsed = parse_name(name)
    except InvalidNameError:
        return name.lower()
    return f"{parsed.host}/{parsed.namespace}/{parsed.name}:{parsed.tag}".lower()


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def _count(table: Mapping[str, Any], key: str) -> int:
    value = table.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a whole number of users (0 or more), got {value!r}")
    return value


def _list(table: Mapping[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
