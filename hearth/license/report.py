"""One model's license as the CLI, the server and the dashboard show it: the terms, the
evidence, the decision under the organisation's policy, the obligations, the lineage.

The enforcement points call the functions here, so the store itself stays free of policy:
``pull``/``import`` (:func:`admit`), serving (:func:`check_serving`), and every listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.config import CONFIG_FILE, Settings
from hearth.errors import LicenseDeniedError
from hearth.license.acceptance import Acceptance, AcceptanceLog
from hearth.license.detect import Detection, detect, evidence_dict
from hearth.license.lineage import NOTICE
from hearth.license.policy import Decision, Policy, Subject, Verdict, decide
from hearth.license.terms import LicenseTerms, load_catalogue
from hearth.store.digest import digest_bytes

if TYPE_CHECKING:
    from hearth.store.store import LocalModel, Store


@dataclass(frozen=True)
class ModelLicense:
    model: str
    model_id: str
    terms: LicenseTerms
    detection: Detection
    verdict: Verdict
    text_digest: str
    acceptance: Acceptance | None

    @property
    def decision(self) -> Decision:
        return self.verdict.decision

    @property
    def attribution(self) -> str | None:
        return self.terms.attribution.text if self.terms.attribution else None

    def summary(self) -> str:
        """One line: ``gemma3:270m: gemma, allowed with obligations (§3.2)``."""
        return (
            f"{self.model}: {self.label}, {self.decision.label}: "
            f"{self.verdict.reason} ({self.verdict.clause})"
        )

    @property
    def label(self) -> str:
        if self.terms.is_unknown and self.detection.unknown_ids:
            return f"unknown ({', '.join(self.detection.unknown_ids)})"
        if self.detection.is_conflict:
            return " vs ".join(self.detection.conflicting)
        return self.terms.id

    def to_dict(self) -> dict[str, Any]:
        record = self.detection.record
        return {
            "model": self.model,
            "model_id": self.model_id,
            "license": {
                "id": self.terms.id,
                "name": self.terms.name,
                "version": self.terms.version,
                "url": self.terms.url,
                "summary": self.terms.summary,
                "unknown_ids": list(self.detection.unknown_ids),
                "conflicting": list(self.detection.conflicting)
                if self.detection.is_conflict
                else [],
            },
            "confidence": self.detection.confidence,
            "evidence": [evidence_dict(item) for item in self.detection.evidence],
            "decision": self.decision.label,
            "reason": self.verdict.reason,
            "clause": self.verdict.clause,
            "findings": [
                {"decision": f.decision.label, "reason": f.reason, "clause": f.clause}
                for f in self.verdict.findings
            ],
            "obligations": [
                {"kind": o.kind, "text": o.text, "clause": o.clause}
                for o in self.verdict.obligations
            ],
            "attribution": self.attribution,
            "lineage": [step.__dict__ for step in record.lineage] if record else [],
            "accepted": None if self.acceptance is None else self.acceptance.__dict__,
        }


def policy_of(settings: Settings) -> Policy:
    """HEARTH_HOME's hearth.toml ``[policy]`` (the default, unenforced policy if none)."""
    return Policy.from_table(settings.policy, str(settings.home / CONFIG_FILE))


def license_report(
    store: Store, model: LocalModel, policy: Policy, log: AcceptanceLog | None = None
) -> ModelLicense:
    found = detect(store, model)
    terms = load_catalogue().get(found.license_id)
    digest = text_digest(store, model, terms)
    name = str(model.name)
    accepted = None if log is None else log.find(terms.id, digest, name)
    subject = Subject(
        model=name,
        terms=terms,
        conflicting=found.conflicting if found.is_conflict else (),
        unknown_ids=found.unknown_ids,
        derivative=bool(found.record and found.record.lineage),
        accepted_by=accepted.describe() if accepted else None,
    )
    verdict = decide(subject, policy)
    return ModelLicense(name, model.manifest_digest, terms, found, verdict, digest, accepted)


def text_digest(store: Store, model: LocalModel, terms: LicenseTerms) -> str:
    """What an acceptance accepts: the license texts the model carries, else the catalogue's
    entry (id and version)."""
    texts = store.licenses(model)
    data = "\n\n".join(texts) if texts else f"catalogue:{terms.id}@{terms.version}"
    return digest_bytes(data.encode())


def accept(store: Store, model: LocalModel, who: str, policy: Policy) -> ModelLicense:
    """Record ``who``'s acceptance of ``model``'s terms; the report as it stands after."""
    log = AcceptanceLog(store.home)
    before = license_report(store, model, policy)
    log.record(who, before.model, before.model_id, before.terms.id, before.text_digest)
    return license_report(store, model, policy, log)


def admit(store: Store, model: LocalModel, policy: Policy) -> ModelLicense:
    """The check after a pull or import: LicenseDeniedError when the policy refuses the model
    (denied, or needing review without a recorded acceptance). Unenforced without a policy."""
    report = license_report(store, model, policy, AcceptanceLog(store.home))
    if policy.declared and report.decision >= Decision.REVIEW:
        hint = (
            "; to accept these terms, run again with --accept-license (recorded)"
            if report.decision is Decision.REVIEW
            else ""
        )
        raise LicenseDeniedError(f"license policy refuses {report.summary()}{hint}")
    return report


def check_serving(store: Store, model: LocalModel, policy: Policy) -> None:
    """Serving refuses a denied model (a model needing review is served: review is for people)."""
    if not policy.declared:
        return
    report = license_report(store, model, policy, AcceptanceLog(store.home))
    if report.decision is Decision.DENIED:
        raise LicenseDeniedError(f"license policy denies {report.summary()}")


def distribution_gaps(store: Store, model: LocalModel) -> list[str]:
    """What the model's license asks to travel with every copy but the model does not carry
    (``push`` and ``export`` warn about each; derivatives get their notice when made)."""
    terms = load_catalogue().get(detect(store, model).license_id)
    texts = store.licenses(model)
    gaps = []
    if terms.distribution.include_license and not texts:
        gaps.append(
            f"its license ({terms.id}) asks for its text with every copy "
            f"({terms.distribution.clause}), but the model carries none: "
            "add it with a Modelfile LICENSE line (hearth create)"
        )
    notice = terms.distribution.notice
    has_notice = model.manifest.layer(NOTICE) is not None or any(
        notice and notice in text for text in texts
    )
    if notice and not has_notice:
        gaps.append(
            f"its license asks for a Notice file ({terms.distribution.clause}) saying: {notice}"
        )
    return gaps
