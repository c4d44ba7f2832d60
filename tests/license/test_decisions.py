"""Decision table: every catalogue license against four organisation profiles, plus the rules
that only some profiles reach (prohibited uses, outputs for training, allow/deny, acceptance,
derivative naming) and the [policy] table's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.errors import ConfigError
from hearth.license import Decision, Policy, Subject, Verdict, decide, load_catalogue
from hearth.license.policy import policy_from_file

STARTUP = Policy(
    commercial_use=True,
    monthly_active_users=50_000,
    intended_uses=("internal", "customer_facing"),
    declared=True,
)
ABOVE_700M = Policy(
    commercial_use=True,
    monthly_active_users=1_000_000_000,
    intended_uses=("customer_facing",),
    declared=True,
)
NONCOMMERCIAL_LAB = Policy(commercial_use=False, intended_uses=("research",), declared=True)
FINETUNE_DISTRIBUTOR = Policy(
    commercial_use=True,
    monthly_active_users=2_000_000,
    intended_uses=("fine_tuning", "customer_facing"),
    distribute_derivatives=True,
    declared=True,
)
PROFILES = (STARTUP, ABOVE_700M, NONCOMMERCIAL_LAB, FINETUNE_DISTRIBUTOR)

A, O, R, D = Decision.ALLOWED, Decision.OBLIGATIONS, Decision.REVIEW, Decision.DENIED  # noqa: E741 (the table reads better with one letter each)
LLAMA = (O, D, O, O)  # use policy (+ "Built with Llama" when offered); §2 above 700M
RAIL = (O, O, O, O)  # use-based restrictions bind every user
PERMISSIVE = (A, A, A, O)  # obligations only when distributing
NON_COMMERCIAL = (D, D, A, D)

#          license id                startup  >700M  lab  distributor
TABLE: dict[str, tuple[Decision, ...]] = {
    "apache-2.0": PERMISSIVE,
    "mit": PERMISSIVE,
    "bsd-3-clause": PERMISSIVE,
    "llama2": LLAMA,
    "llama3": LLAMA,
    "llama3.1": LLAMA,
    "llama3.2": LLAMA,
    "llama3.3": LLAMA,
    "llama4": LLAMA,
    "gemma": RAIL,
    "qwen": (A, D, A, O),  # 100M users; "Built with Qwen" when a derived model is shared
    "qwen-research": NON_COMMERCIAL,
    "mistral-research": NON_COMMERCIAL,
    "mistral-non-production": NON_COMMERCIAL,
    "deepseek": RAIL,
    "falcon": (R, R, O, R),  # a hosted service needs TII's separate license
    "creativeml-openrail-m": RAIL,
    "bigscience-openrail-m": RAIL,
    "cc-by-4.0": PERMISSIVE,
    "cc-by-nc-4.0": NON_COMMERCIAL,
    "cc-by-sa-4.0": PERMISSIVE,
    "unknown": (R, R, R, R),
}


def verdict(
    license_id: str,
    policy: Policy,
    model: str = "m:1",
    conflicting: tuple[str, ...] = (),
    unknown_ids: tuple[str, ...] = (),
    derivative: bool = False,
    accepted_by: str | None = None,
) -> Verdict:
    terms = load_catalogue().get(license_id)
    subject = Subject(model, terms, conflicting, unknown_ids, derivative, accepted_by)
    return decide(subject, policy)


def test_the_table_covers_the_whole_catalogue() -> None:
    assert set(TABLE) == {terms.id for terms in load_catalogue()}


@pytest.mark.parametrize("license_id", sorted(TABLE))
def test_decision_table(license_id: str) -> None:
    got = tuple(verdict(license_id, p).decision for p in PROFILES)
    assert got == TABLE[license_id]


def test_every_decision_names_its_clause() -> None:
    for license_id in TABLE:
        for policy in PROFILES:
            result = verdict(license_id, policy)
            assert result.clause, (license_id, policy)


@pytest.mark.parametrize(
    ("license_id", "policy", "clause", "reason"),
    [
        ("llama3.1", ABOVE_700M, "§2", "exceed 700,000,000"),
        ("llama2", ABOVE_700M, "§2", "a separate license is required"),
        ("qwen", ABOVE_700M, "§4 (restrictions)", "exceed 100,000,000"),
        ("cc-by-nc-4.0", STARTUP, "§1(i), §2(a)(1)", "commercial use not permitted"),
        ("mistral-non-production", STARTUP, "§1 (definitions", "commercial use not permitted"),
        ("falcon", STARTUP, "§9 (Hosting Use)", "hosted use needs a separate license"),
        ("unknown", STARTUP, "detection", "no license found"),
        ("gemma", STARTUP, "§3.2", "obligations apply"),
    ],
)
def test_deciding_clause(license_id: str, policy: Policy, clause: str, reason: str) -> None:
    result = verdict(license_id, policy)
    assert result.clause.startswith(clause)
    assert reason in result.reason


def kinds(result: Verdict) -> set[str]:
    return {o.kind for o in result.obligations}


def test_obligations_follow_what_the_organisation_does() -> None:
    startup = verdict("llama3.1", STARTUP)
    assert kinds(startup) == {"use-policy", "attribution"}
    assert "Built with Llama" in next(
        o.text for o in startup.obligations if o.kind == "attribution"
    )
    lab = verdict("llama3.1", NONCOMMERCIAL_LAB)  # internal research: no product to label
    assert kinds(lab) == {"use-policy"}
    distributor = verdict("llama3.1", FINETUNE_DISTRIBUTOR)
    assert kinds(distributor) == {
        "use-policy",
        "attribution",
        "license",
        "notice",
        "naming",
        "derivatives",
    }
    assert kinds(verdict("apache-2.0", FINETUNE_DISTRIBUTOR)) == {"license"}
    gemma = verdict("gemma", FINETUNE_DISTRIBUTOR)
    assert {"notice", "derivatives", "use-policy"} <= kinds(gemma)


def test_prohibited_and_restricted_uses() -> None:
    military = Policy(intended_uses=("military",), declared=True)
    result = verdict("llama3.1", military)
    assert result.decision is D and result.clause == "§1.b.iv"
    medical = Policy(intended_uses=("medical_advice",), declared=True)
    assert verdict("creativeml-openrail-m", medical).decision is D
    assert verdict("llama3.1", medical).decision is R
    assert verdict("apache-2.0", medical).decision is A


def test_training_other_models_on_outputs() -> None:
    distil = Policy(intended_uses=("synthetic_data",), declared=True)
    llama3 = verdict("llama3", distil)
    assert llama3.decision is D and llama3.clause == "§1.b.v"
    assert verdict("llama2", distil).decision is D
    llama31 = verdict("llama3.1", distil)
    assert llama31.decision is O and "outputs" in kinds(llama31)
    assert "outputs" in kinds(verdict("gemma", distil))  # a distilled model is a derivative


def test_allow_and_deny_lists() -> None:
    licensed = Policy(
        commercial_use=True, monthly_active_users=10**9, allow=("llama3.1",), declared=True
    )
    result = verdict("llama3.1", licensed)
    assert result.decision is O and result.clause == "hearth.toml policy.allow"
    deny = Policy(deny=("acme/bot:v1",), declared=True)
    denied = verdict("apache-2.0", deny, model="hearth.local/acme/bot:v1")
    assert denied.decision is D and denied.clause == "hearth.toml policy.deny"
    by_license = Policy(deny=("gemma",), allow=("gemma",), declared=True)
    assert verdict("gemma", by_license).decision is D


def test_contradicting_and_unknown_evidence_need_review() -> None:
    conflict = verdict("mit", STARTUP, conflicting=("mit", "apache-2.0"))
    assert conflict.decision is R
    assert "mit vs apache-2.0" in conflict.reason
    unknown = verdict("unknown", STARTUP, unknown_ids=("acme-model-license",))
    assert unknown.decision is R
    assert "'acme-model-license' is not in the catalogue" in unknown.reason


def test_an_acceptance_turns_review_into_obligations_but_not_denial() -> None:
    accepted = verdict("unknown", STARTUP, accepted_by="alice at 2026-01-01T00:00:00+00:00")
    assert accepted.decision is O
    assert "accepted by alice" in accepted.findings[0].reason
    still_denied = verdict("cc-by-nc-4.0", STARTUP, accepted_by="alice at now")
    assert still_denied.decision is D


def test_a_distributed_derivative_must_follow_the_naming_rule() -> None:
    bad = verdict("llama3.1", FINETUNE_DISTRIBUTOR, model="acme/support-bot:v1", derivative=True)
    assert bad.decision is R and bad.clause == "§1.b.i"
    good = verdict("llama3.1", FINETUNE_DISTRIBUTOR, model="acme/llama-support:v1", derivative=True)
    assert good.decision is O


def test_policy_table_validation(tmp_path: Path) -> None:
    def load(text: str) -> Policy:
        path = tmp_path / "policy.toml"
        path.write_text(text)
        return policy_from_file(path)

    policy = load(
        "[policy]\ncommercial_use = false\nmonthly_active_users = 5\n"
        'intended_uses = ["research"]\ndistribute_derivatives = true\nallow = ["mit"]\n'
    )
    assert policy.declared and policy.intended_uses == ("research",)
    assert not policy.commercial_use and policy.distribute_derivatives
    cases = {
        "[policy]\ncommercial_use = 'yes'\n": "commercial_use must be true or false",
        "[policy]\nmonthly_active_users = -1\n": "monthly_active_users must be a whole number",
        "[policy]\nintended_uses = ['chatbots']\n": "policy.intended_uses: 'chatbots' is not",
        "[policy]\nallow = 'mit'\n": "allow must be a list of strings",
        "[policy]\ncommercial = true\n": "policy.commercial is not a policy key",
        "policy = 3\n": "'policy' must be a table",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load(text)
    with pytest.raises(ConfigError, match="does not exist"):
        policy_from_file(tmp_path / "missing.toml")


def test_malformed_hearth_toml_is_one_line_saying_where(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.toml").write_text("[aliases]\n\n[policy]\ncommercial_use = yes\n")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"HEARTH_HOME": str(home)})
    message = str(caught.value)
    assert "\n" not in message
    assert str(home / "hearth.toml") in message and "line 4" in message
