"""The fixed vocabulary of intended uses an organisation declares in ``[policy] intended_uses``.

Catalogue files name the same words in ``prohibited`` and ``review`` lists, so a policy and a
license meet on exact words, never on prose.
"""

from __future__ import annotations

from collections.abc import Iterable

INTENDED_USES: dict[str, str] = {
    "internal": "tools used only by the organisation's own people",
    "customer_facing": "a product or service offered to people outside the organisation",
    "research": "research and evaluation, no commercial product",
    "fine_tuning": "training derivatives of the model (fine-tunes, merges, adapters)",
    "synthetic_data": "using the model's outputs to train or improve other models",
    "medical_advice": "medical advice or interpretation of medical results",
    "legal_advice": "legal advice",
    "financial_advice": "financial advice",
    "automated_decisions": "automated decisions about people's rights (credit, jobs, housing)",
    "law_enforcement": "policing, justice, immigration or asylum decisions",
    "military": "military, warfare or weapons",
    "surveillance": "tracking or monitoring individuals",
    "critical_infrastructure": "operating critical infrastructure, transport or heavy machinery",
}


def check_uses(values: Iterable[object], where: str) -> list[str]:
    """``values`` as a list of vocabulary words; ValueError naming the first that is not one."""
    checked = []
    for value in values:
        if not isinstance(value, str) or value not in INTENDED_USES:
            raise ValueError(
                f"{where}: {value!r} is not an intended use (one of: {', '.join(INTENDED_USES)})"
            )
        checked.append(value)
    return checked
