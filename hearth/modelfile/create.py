"""Build a model from a :class:`Recipe`: the base's layers, with the recipe's put on top.

Everything is checked before anything is written (the template compiles, the parameters are
valid, each adapter is a LoRA GGUF for the base's architecture), and the new manifest is
written last, under the store's lock: a failed create leaves the store as it was.

What a derived model inherits: the base's weights, adapters, license texts and card; its system
prompt, template and messages unless the recipe replaces them; its parameters, overridden name by
name. Licenses accumulate (a fine-tune stays under its base's terms).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import gguf

from hearth.engine.templates import ChatTemplate
from hearth.errors import ModelfileError, ModelNotFoundError, TemplateError, ValidationError
from hearth.license.lineage import LineageStep, derived_layers
from hearth.modelfile import params
from hearth.modelfile.parse import Recipe
from hearth.store import Descriptor, LocalModel, MediaType, ModelConfig, Store, read_gguf_info
from hearth.store.gguf_meta import GGUFInfo
from hearth.store.profile import messages_json, parameters_json

Status = Callable[[str], None]
_REPLACED = frozenset({MediaType.SYSTEM, MediaType.TEMPLATE, MediaType.PARAMS, MediaType.MESSAGES})
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.[A-Za-z]|if \.|range \.|end\s*-?\}\})")


@dataclass(frozen=True)
class _Base:
    """What the new model starts from: a stored model, or a GGUF file not yet stored."""

    model: LocalModel | None
    file: Path | None
    info: GGUFInfo | None
    label: str


def create_model(
    store: Store,
    name: str,
    recipe: Recipe,
    status: Status | None = None,
    extra_layers: Sequence[tuple[str, str]] = (),
) -> LocalModel:
    """Create (or replace) the model ``name`` from ``recipe``; ``status`` hears each step.
    ``extra_layers`` are (media type, text) layers added as they are (a fine-tune's lineage)."""
    say = status or (lambda _message: None)
    say("reading the base model")
    base = _resolve_base(store, recipe)
    architecture = base.model.info.architecture if base.model else _info(base).architecture
    say("checking the recipe")
    stored_params, ignored = _parameters(store, base, recipe)
    for ignored_name in ignored:
        say(f"ignoring parameter {ignored_name}: Hearth chooses it itself")
    _check_template(recipe.template)
    for adapter in recipe.adapters:
        _check_adapter(adapter, architecture)
    with store.locked():
        layers = _layers(store, base, recipe, stored_params, say)
        if base.model is not None:  # the base's terms, plus this step in the lineage
            tuned = any(kind == MediaType.LINEAGE for kind, _ in extra_layers)  # a fine-tune's
            step = LineageStep.now("finetune" if tuned else "create", base.model)
            layers = derived_layers(store, base.model, layers, step)
        extras = [store.add_text_layer(kind, text) for kind, text in extra_layers]
        replaced = {layer.media_type for layer in extras}  # a new lineage replaces the base's
        layers = _ordered([layer for layer in layers if layer.media_type not in replaced] + extras)
        config = _new_config(store, base, recipe)
        say("writing manifest")
        model = store.commit(name, config, layers)
    say("success")
    return model


def _resolve_base(store: Store, recipe: Recipe) -> _Base:
    if recipe.base_is_path:
        path = Path(recipe.base)
        if path.is_dir():
            raise ModelfileError(
                f"FROM {path}: a folder must be imported first (hearth import {path} --name N), "
                "then used as FROM N"
            )
        if not path.is_file():
            raise ModelfileError(f"FROM {path}: no such file")
        return _Base(None, path, read_gguf_info(path), f"file:{path.name}")
    if not recipe.base:
        raise ModelfileError("no base model: give FROM (or 'from' on the API)")
    try:
        model = store.ensure(recipe.base)
    except ModelNotFoundError as error:
        raise ModelfileError(f"FROM {recipe.base}: {error}") from None
    return _Base(model, None, None, str(model.name))


def _info(base: _Base) -> GGUFInfo:
    assert base.info is not None
    return base.info


def _parameters(store: Store, base: _Base, recipe: Recipe) -> tuple[dict[str, object], list[str]]:
    inherited = store.profile(base.model).parameters if base.model else {}
    try:
        changes, ignored = params.normalise(recipe.parameters)
    except ValidationError as error:
        raise ModelfileError(f"PARAMETER {error}") from None
    return params.merge(inherited, changes), ignored


def _check_template(template: str | None) -> None:
    if template is None:
        return
    if _GO_TEMPLATE.search(template):
        raise ModelfileError(
            "TEMPLATE looks like an Ollama Go template ({{ .Prompt }}); Hearth renders chat "
            "templates in Jinja, the Hugging Face format: {% for m in messages %}...{% endfor %}"
        )
    try:
        ChatTemplate(template)
    except TemplateError as error:
        raise ModelfileError(f"TEMPLATE: {error}") from None


def _check_adapter(path: Path, architecture: str) -> None:
    if not path.is_file():
        raise ModelfileError(f"ADAPTER {path}: no such file")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as error:  # the reader fails in many ways on bad input; all mean one thing
        raise ModelfileError(f"ADAPTER {path.name}: not a GGUF file ({error})") from None
    fields = {key: _field_text(reader, key) for key in ("general.type", "adapter.type")}
    adapter_arch = _field_text(reader, "general.architecture")
    if fields["general.type"] != "adapter" or fields["adapter.type"] != "lora":
        raise ModelfileError(
            f"ADAPTER {path.name}: not a LoRA adapter (general.type={fields['general.type']!r}, "
            f"adapter.type={fields['adapter.type']!r}); convert a PEFT adapter to GGUF first"
        )
    if adapter_arch != architecture:
        raise ModelfileError(
            f"ADAPTER {path.name} is for {adapter_arch!r} models, but the base is {architecture!r}"
        )


def _field_text(reader: gguf.GGUFReader, key: str) -> str | None:
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return str(field.contents())
    except Exception:
        return None


def _layers(
    store: Store,
    base: _Base,
    recipe: Recipe,
    parameters: dict[str, object],
    say: Status,
) -> list[Descriptor]:
    inherited = list(base.model.manifest.layers) if base.model else []
    if base.file is not None:
        say(f"copying {base.file.name}")
        inherited = [store.add_file_layer(MediaType.MODEL, base.file)]
    kept = [layer for layer in inherited if not _replaced(layer, recipe, parameters)]
    added: list[Descriptor] = []
    for adapter in recipe.adapters:
        say(f"adding adapter {adapter.name}")
        added.append(store.add_file_layer(MediaType.ADAPTER, adapter))
    texts = {
        MediaType.TEMPLATE: recipe.template,
        MediaType.SYSTEM: recipe.system,
    }
    for media_type, text in texts.items():
        if text is not None:
            added.append(store.add_text_layer(media_type, text))
    if parameters:
        added.append(store.add_text_layer(MediaType.PARAMS, parameters_json(parameters)))
    if recipe.messages:
        added.append(
            store.add_text_layer(MediaType.MESSAGES, messages_json(tuple(recipe.messages)))
        )
    for text in recipe.licenses:
        added.append(store.add_text_layer(MediaType.LICENSE, text))
    return [*kept, *added]


def _replaced(layer: Descriptor, recipe: Recipe, parameters: dict[str, object]) -> bool:
    """Whether the recipe supplies its own version of this (single-valued) layer."""
    if layer.media_type not in _REPLACED:
        return False
    supplied = {
        MediaType.SYSTEM: recipe.system is not None,
        MediaType.TEMPLATE: recipe.template is not None,
        MediaType.PARAMS: True,  # the merged parameters replace the base's layer
        MediaType.MESSAGES: recipe.messages is not None,
    }
    return supplied[layer.media_type]


_ORDER = (
    MediaType.MODEL,
    MediaType.ADAPTER,
    MediaType.TEMPLATE,
    MediaType.SYSTEM,
    MediaType.PARAMS,
    MediaType.MESSAGES,
    MediaType.LICENSE,
    MediaType.NOTICE,
    MediaType.LICENSE_RECORD,
    MediaType.LINEAGE,
    MediaType.CARD,
)


def _ordered(layers: list[Descriptor]) -> list[Descriptor]:
    """Model first, then a fixed order, so the same recipe always gives the same manifest."""
    rank = {media_type: index for index, media_type in enumerate(_ORDER)}
    seen: set[tuple[str, str]] = set()
    unique = []
    for layer in layers:  # the same license twice is one layer
        if (layer.media_type, layer.digest) not in seen:
            seen.add((layer.media_type, layer.digest))
            unique.append(layer)
    return sorted(unique, key=lambda layer: rank.get(layer.media_type, len(_ORDER)))


def _new_config(store: Store, base: _Base, recipe: Recipe) -> ModelConfig:
    created = datetime.now(UTC).isoformat(timespec="seconds")
    if base.model is None:
        info = _info(base)
        config = ModelConfig(
            format="gguf",
            architecture=info.architecture,
            parameter_count=info.parameter_count,
            quantization=info.quantization,
            context_length=info.context_length,
            license_id=info.license,
            source=base.label,
            created=created,
            has_chat_template=info.chat_template is not None,
        )
    else:
        config = replace(store.config_of(base.model), source=f"created from {base.label}")
    has_template = config.has_chat_template or recipe.template is not None
    return replace(config, created=created, has_chat_template=has_template)
