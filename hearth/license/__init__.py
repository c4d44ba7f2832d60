"""License terms, detection and policy: which terms each model is under, and whether the
organisation may use it the way it intends (docs/LICENSES.md)."""

from hearth.license.acceptance import Acceptance, AcceptanceLog
from hearth.license.detect import Detection, Evidence, combine, detect
from hearth.license.fingerprint import fingerprint, match_text
from hearth.license.lineage import (
    LICENSE_RECORD,
    NOTICE,
    LicenseRecord,
    LineageStep,
    base_record,
    derived_layers,
    inherit,
    read_record,
)
from hearth.license.policy import Decision, Obligation, Policy, Subject, Verdict, decide
from hearth.license.report import (
    ModelLicense,
    accept,
    admit,
    check_serving,
    distribution_gaps,
    license_report,
    policy_of,
)
from hearth.license.terms import Catalogue, LicenseTerms, load_catalogue
from hearth.license.uses import INTENDED_USES

__all__ = [
    "INTENDED_USES",
    "LICENSE_RECORD",
    "NOTICE",
    "Acceptance",
    "AcceptanceLog",
    "Catalogue",
    "Decision",
    "Detection",
    "Evidence",
    "LicenseRecord",
    "LicenseTerms",
    "LineageStep",
    "ModelLicense",
    "Obligation",
    "Policy",
    "Subject",
    "Verdict",
    "accept",
    "admit",
    "base_record",
    "check_serving",
    "combine",
    "decide",
    "derived_layers",
    "detect",
    "distribution_gaps",
    "fingerprint",
    "inherit",
    "license_report",
    "load_catalogue",
    "match_text",
    "policy_of",
    "read_record",
]
