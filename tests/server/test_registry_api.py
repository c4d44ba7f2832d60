"""The read-only OCI distribution API of `hearth serve` (/v2), through a live server: what it
answers, and one Hearth pulling a model from another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.db import open_database
from hearth.errors import ModelNotFoundError, RegistryError
from hearth.server.keys import KeyStore
from hearth.store import MediaType, Store
from tests.server.live_server import live_server, server_settings


@pytest.fixture
def server_home(tmp_path: Path, tiny_model: Path) -> Path:
    home = tmp_path / "server"
    store = Store(server_settings(home))
    store.import_gguf(tiny_model, "team/tiny:1")
    return home


@pytest.fixture
def base_url(server_home: Path) -> Iterator[str]:
    with live_server(server_settings(server_home)) as url:
        yield url


def client_store(home: Path, **env: str) -> Store:
    docker_config = str(home.parent / "no-docker.json")
    return Store(
        Settings.from_env({"HEARTH_HOME": str(home), "HEARTH_DOCKER_CONFIG": docker_config, **env})
    )


def test_hearth_pulls_from_another_hearth(base_url: str, server_home: Path, tmp_path: Path) -> None:
    host = base_url.removeprefix("http://")
    pulled = client_store(tmp_path / "client").pull(f"{host}/team/tiny:1")
    served = Store(server_settings(server_home)).resolve("team/tiny:1")
    assert pulled.manifest_digest == served.manifest_digest
    assert pulled.model_path.read_bytes() == served.model_path.read_bytes()


def test_base_and_tags(base_url: str) -> None:
    base = httpx.get(f"{base_url}/v2/")
    assert base.status_code == 200 and base.json() == {}
    assert base.headers["docker-distribution-api-version"] == "registry/2.0"
    tags = httpx.get(f"{base_url}/v2/team/tiny/tags/list")
    assert tags.json() == {"name": "team/tiny", "tags": ["1"]}


def test_manifest_by_tag_and_digest(base_url: str, server_home: Path) -> None:
    served = Store(server_settings(server_home)).resolve("team/tiny:1")
    by_tag = httpx.get(f"{base_url}/v2/team/tiny/manifests/1")
    assert by_tag.status_code == 200
    assert by_tag.headers["content-type"] == MediaType.MANIFEST
    assert by_tag.headers["docker-content-digest"] == served.manifest_digest
    by_digest = httpx.get(f"{base_url}/v2/team/tiny/manifests/{served.manifest_digest}")
    assert by_digest.content == by_tag.content
    head = httpx.head(f"{base_url}/v2/team/tiny/manifests/1")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(by_tag.content))


def test_blob_with_range(base_url: str, server_home: Path) -> None:
    served = Store(server_settings(server_home)).resolve("team/tiny:1")
    layer = served.manifest.layer(MediaType.MODEL)
    assert layer is not None
    url = f"{base_url}/v2/team/tiny/blobs/{layer.digest}"
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == served.model_path.read_bytes()[100:200]
    assert part.headers["docker-content-digest"] == layer.digest
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(layer.size)


def test_errors_in_the_distribution_form(base_url: str, server_home: Path) -> None:
    missing = httpx.get(f"{base_url}/v2/team/tiny/manifests/nope")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    unknown_blob = httpx.get(f"{base_url}/v2/team/tiny/blobs/sha256:{'0' * 64}")
    assert unknown_blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    bad_digest = httpx.get(f"{base_url}/v2/team/tiny/blobs/sha256:..%2F..%2Fx")
    assert bad_digest.status_code == 404
    assert bad_digest.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    short = httpx.get(f"{base_url}/v2/team/tiny/blobs/sha256:abc")
    assert short.status_code == 400 and short.json()["errors"][0]["code"] == "DIGEST_INVALID"
    # A blob is served only through a repository whose model uses it.
    served = Store(server_settings(server_home)).resolve("team/tiny:1")
    other_repo = httpx.get(f"{base_url}/v2/team/other/blobs/{served.manifest.config.digest}")
    assert other_repo.status_code == 404


def test_writes_are_refused(base_url: str) -> None:
    for method in ("PUT", "POST", "PATCH", "DELETE"):
        response = httpx.request(method, f"{base_url}/v2/team/tiny/manifests/1")
        assert response.status_code == 405
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    upload = httpx.post(f"{base_url}/v2/team/tiny/blobs/uploads/")
    assert upload.status_code == 405


def test_pull_of_a_missing_model_from_hearth(base_url: str, tmp_path: Path) -> None:
    host = base_url.removeprefix("http://")
    with pytest.raises(ModelNotFoundError):
        client_store(tmp_path / "client").pull(f"{host}/team/absent:1")


def test_keys_are_required_once_they_exist(
    base_url: str, server_home: Path, tmp_path: Path
) -> None:
    engine = open_database(server_settings(server_home))
    keys = KeyStore(engine)
    secret = keys.create("puller", models=["team/tiny:1"], expires=None).secret
    narrow = keys.create("other", models=["team/else:*"], expires=None).secret
    engine.dispose()
    host = base_url.removeprefix("http://")

    refused = httpx.get(f"{base_url}/v2/team/tiny/manifests/1")
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert refused.headers["www-authenticate"].startswith('Bearer realm="')
    # Other paths keep the OpenAI error form.
    assert "error" in httpx.get(f"{base_url}/v1/models").json()

    with pytest.raises(RegistryError):
        client_store(tmp_path / "anonymous").pull(f"{host}/team/tiny:1")
    denied = httpx.get(
        f"{base_url}/v2/team/tiny/manifests/1", headers={"Authorization": f"Bearer {narrow}"}
    )
    assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "DENIED"

    pulled = client_store(tmp_path / "keyed", HEARTH_REGISTRY_AUTH=secret).pull(
        f"{host}/team/tiny:1"
    )
    assert pulled.name.full == f"{host}/team/tiny:1"
