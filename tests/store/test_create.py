"""``hearth create``: a base model plus a Modelfile's layers, checked before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.devtools.tiny_gguf import write_tiny_lora
from hearth.errors import ModelfileError
from hearth.modelfile import parse_modelfile
from hearth.modelfile.create import create_model
from hearth.modelfile.render import render_modelfile
from hearth.store import LocalModel, MediaType, Store

TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"


@pytest.fixture
def base(store: Store, tiny_model: Path) -> str:
    store.import_gguf(tiny_model, "tiny")
    return "tiny:latest"


def _create(store: Store, name: str, text: str, folder: Path) -> None:
    create_model(store, name, parse_modelfile(text, folder))


def _files(store: Store) -> set[Path]:
    return set(store.home.rglob("*"))


def test_create_adds_layers_and_keeps_the_base(store: Store, base: str, tmp_path: Path) -> None:
    write_tiny_lora(tmp_path / "lora.gguf")
    _create(
        store,
        "acme/bot:v1",
        f'FROM {base}\nSYSTEM Be brief.\nPARAMETER temperature 0.1\nPARAMETER stop "END"\n'
        f'TEMPLATE """{TEMPLATE}"""\nMESSAGE user Hi\nMESSAGE assistant Hello\n'
        "ADAPTER ./lora.gguf\nLICENSE Custom terms\n",
        tmp_path,
    )
    bot = store.resolve("acme/bot:v1")
    tiny = store.resolve(base)
    assert bot.model_path == tiny.model_path  # weights shared, not copied
    media = [layer.media_type for layer in bot.manifest.layers]
    assert media == [
        MediaType.MODEL,
        MediaType.ADAPTER,
        MediaType.TEMPLATE,
        MediaType.SYSTEM,
        MediaType.PARAMS,
        MediaType.MESSAGES,
        MediaType.LICENSE,
        MediaType.LICENSE_RECORD,  # the base's terms and this step of the lineage
    ]
    profile = store.profile(bot)
    assert profile.system == "Be brief."
    assert profile.template == TEMPLATE
    assert profile.parameters == {"temperature": 0.1, "stop": ["END"]}
    assert profile.messages == (("user", "Hi"), ("assistant", "Hello"))
    assert len(profile.adapters) == 1 and profile.adapters[0].is_file()
    assert bot.info.license_id == tiny.info.license_id
    assert bot.info.source == f"created from {base}"
    assert store.profile(tiny).is_plain


def test_a_derived_model_inherits_and_overrides(store: Store, base: str, tmp_path: Path) -> None:
    _create(store, "first", f"FROM {base}\nSYSTEM One.\nPARAMETER top_k 5\nLICENSE A\n", tmp_path)
    _create(store, "second", "FROM first\nPARAMETER temperature 0.3\nLICENSE B\n", tmp_path)
    second = store.resolve("second")
    profile = store.profile(second)
    assert profile.system == "One."
    assert profile.parameters == {"top_k": 5, "temperature": 0.3}
    assert store.licenses(second) == ["A", "B"]


def test_from_a_gguf_path(store: Store, tiny_model: Path, tmp_path: Path) -> None:
    local = tmp_path / "weights.gguf"
    local.write_bytes(tiny_model.read_bytes())
    _create(store, "from-file", "FROM ./weights.gguf\nSYSTEM Hi.\n", tmp_path)
    model = store.resolve("from-file")
    assert model.model_path.read_bytes() == tiny_model.read_bytes()
    assert model.info.source == "file:weights.gguf"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('TEMPLATE """{{ .System }} {{ .Prompt }}"""', "Ollama Go template"),
        ('TEMPLATE """{% for m in messages %}"""', "TEMPLATE: chat template is invalid"),
        ("ADAPTER ./missing.gguf", "no such file"),
        ("ADAPTER ./not-gguf.gguf", "not a GGUF file"),
        ("ADAPTER ./model-not-adapter.gguf", "not a LoRA adapter"),
        ("ADAPTER ./other-arch.gguf", "is for 'gemma3' models, but the base is 'llama'"),
        ("PARAMETER top_p 7", "invalid top_p=7.0"),
    ],
)
def test_bad_recipes_change_nothing(
    store: Store, base: str, tiny_model: Path, tmp_path: Path, extra: str, message: str
) -> None:
    (tmp_path / "not-gguf.gguf").write_text("hello")
    (tmp_path / "model-not-adapter.gguf").write_bytes(tiny_model.read_bytes())
    write_tiny_lora(tmp_path / "other-arch.gguf", architecture="gemma3")
    before = _files(store)
    with pytest.raises(ModelfileError, match=message):
        _create(store, "broken", f"FROM {base}\n{extra}\n", tmp_path)
    assert _files(store) == before


def test_unknown_base_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="FROM nope: model 'nope' not found"):
        _create(store, "x", "FROM nope\n", tmp_path)


def test_rendered_modelfile_rebuilds_the_model(store: Store, base: str, tmp_path: Path) -> None:
    write_tiny_lora(tmp_path / "lora.gguf")
    _create(
        store,
        "original",
        f'FROM {base}\nSYSTEM """Two\nlines"""\nPARAMETER stop "A"\nPARAMETER stop "B"\n'
        "MESSAGE user Hi\nADAPTER ./lora.gguf\nLICENSE L\n",
        tmp_path,
    )
    original = store.resolve("original")
    text = render_modelfile(original, store.profile(original), store.licenses(original))
    _create(store, "rebuilt", text, tmp_path)
    rebuilt = store.resolve("rebuilt")
    assert store.profile(rebuilt) == store.profile(original)
    assert rebuilt.model_path == original.model_path
    # FROM the weights' blob: the same layers, except the lineage (no known base).
    assert _without_record(rebuilt) == _without_record(original)


def _without_record(model: LocalModel) -> list[str]:
    return [
        layer.digest
        for layer in model.manifest.layers
        if layer.media_type not in (MediaType.LICENSE_RECORD, MediaType.NOTICE)
    ]
