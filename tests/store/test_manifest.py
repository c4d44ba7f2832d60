from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import StoreError
from hearth.store import Descriptor, Manifest, MediaType, ModelConfig

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def sample() -> Manifest:
    return Manifest(
        config=Descriptor(MediaType.CONFIG, D1, 200),
        layers=(
            Descriptor(MediaType.MODEL, D2, 1000, {"org.opencontainers.image.title": "m.gguf"}),
            Descriptor(MediaType.LICENSE, D3, 50),
        ),
    )


def test_round_trip_and_oci_fields() -> None:
    manifest = sample()
    data = manifest.to_json()
    assert Manifest.from_json(data) == manifest
    obj = json.loads(data)
    assert obj["schemaVersion"] == 2
    assert obj["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert obj["artifactType"] == "application/vnd.hearth.model.v1"
    assert obj["config"]["mediaType"] == "application/vnd.hearth.model.config.v1+json"
    assert [layer["mediaType"] for layer in obj["layers"]] == [
        "application/vnd.hearth.model.gguf",
        "application/vnd.hearth.model.license.txt",
    ]
    assert manifest.to_json() == data  # deterministic bytes, so a stable digest


def test_queries() -> None:
    manifest = sample()
    assert manifest.size == 1050
    assert manifest.digests() == {D1, D2, D3}
    layer = manifest.layer(MediaType.LICENSE)
    assert layer is not None and layer.digest == D3
    assert manifest.layer(MediaType.TEMPLATE) is None


def test_media_type_constants() -> None:
    assert MediaType.ADAPTER == "application/vnd.hearth.model.adapter.gguf"
    assert MediaType.TEMPLATE == "application/vnd.hearth.model.template.jinja"
    assert MediaType.PARAMS == "application/vnd.hearth.model.params+json"
    assert MediaType.SYSTEM == "application/vnd.hearth.model.system.txt"
    assert MediaType.LICENSE in MediaType.LAYERS


def _mutated(change: str) -> bytes:
    obj = json.loads(sample().to_json())
    if change == "bad digest":
        obj["layers"][0]["digest"] = "sha256:../../etc/passwd"
    elif change == "negative size":
        obj["layers"][0]["size"] = -1
    elif change == "string size":
        obj["config"]["size"] = "200"
    elif change == "schema":
        obj["schemaVersion"] = 1
    elif change == "media type":
        obj["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    elif change == "config type":
        obj["config"]["mediaType"] = "application/json"
    elif change == "layers":
        obj["layers"] = {}
    elif change == "annotations":
        obj["annotations"] = {"a": 1}
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "change",
    [
        "bad digest",
        "negative size",
        "string size",
        "schema",
        "media type",
        "config type",
        "layers",
        "annotations",
    ],
)
def test_invalid_manifest_names_the_file(change: str) -> None:
    path = Path("/store/manifests/hearth.local/library/x/latest")
    with pytest.raises(StoreError, match=f"^{path}: invalid manifest: "):
        Manifest.from_json(_mutated(change), path)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff\xfe", b"null"])
def test_not_a_manifest(data: bytes) -> None:
    with pytest.raises(StoreError, match="invalid manifest"):
        Manifest.from_json(data, "m")


def test_config_round_trip_and_validation() -> None:
    config = ModelConfig(
        format="gguf",
        architecture="llama",
        parameter_count=10,
        quantization="F32",
        context_length=None,
        license_id=None,
        source="file:x.gguf",
        created="2025-01-01T00:00:00+00:00",
        has_chat_template=True,
    )
    assert ModelConfig.from_json(config.to_json()) == config
    broken = json.loads(config.to_json())
    broken["parameter_count"] = "many"
    with pytest.raises(StoreError, match="cfg: invalid model config: parameter_count"):
        ModelConfig.from_json(json.dumps(broken).encode(), "cfg")
