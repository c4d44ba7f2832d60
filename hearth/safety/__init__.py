"""Safety pipeline: PII detection and redaction, blocklists and vetted regular expressions, an
optional guard-model classifier, on input and on output (streams included), and an audit log
of every decision. See docs/SAFETY.md."""

from hearth.safety.audit import AuditEvent, AuditLog
from hearth.safety.pipeline import CONTENT_FILTER, Gate, SafetyService
from hearth.safety.policy import Policy, SafetyConfig
from hearth.safety.scan import StreamFilter, screen_text

__all__ = [
    "CONTENT_FILTER",
    "AuditEvent",
    "AuditLog",
    "Gate",
    "Policy",
    "SafetyConfig",
    "SafetyService",
    "StreamFilter",
    "screen_text",
]
