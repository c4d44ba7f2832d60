"""Pushing to and pulling from a real OCI registry (Debian's docker-registry, distribution 2.8),
with a misbehaving front for bearer tokens, dropped connections and corrupted bytes."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.errors import (
    DigestMismatchError,
    InvalidModelFileError,
    ModelNotFoundError,
    RegistryError,
    StoreError,
)
from hearth.store import Descriptor, Manifest, MediaType, Store, parse_name, read_gguf_info
from hearth.store.sources.registry import (
    Credentials,
    docker_credentials,
    parse_challenge,
    registry_url,
)
from tests.cli.process import run_hearth
from tests.registry_server import (
    FrontBehaviour,
    RegistryProcess,
    TokenServer,
    docker_registry,
    htpasswd_line,
    registry_available,
    registry_front,
    serve_static,
    token_server,
)

pytestmark = pytest.mark.skipif(
    not registry_available(),
    reason="docker-registry not installed: run scripts/install_system_deps.sh",
)


def make_store(home: Path, **env: str) -> Store:
    return Store(
        Settings.from_env(
            {
                "HEARTH_HOME": str(home),
                "HEARTH_DOCKER_CONFIG": str(home.parent / f"{home.name}-docker.json"),
                **env,
            }
        )
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    with docker_registry(tmp_path / "registry") as process:
        yield process


@pytest.fixture
def source(tmp_path: Path, tiny_model: Path) -> Store:
    store = make_store(tmp_path / "source")
    store.import_gguf(tiny_model, "tiny")
    return store


def files_under(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {".lock"}


def test_push_then_pull_gives_the_same_model(
    registry: RegistryProcess, source: Store, tmp_path: Path
) -> None:
    target = f"{registry.host}/team/tiny:1"
    progress: list[tuple[int, int | None]] = []
    result = source.push("tiny", target, progress=lambda d, t: progress.append((d, t)))
    local = source.resolve("tiny")
    assert result.manifest_digest == local.manifest_digest
    assert sorted(result.uploaded) == sorted(local.manifest.digests())
    assert progress[-1] == (local.size + local.manifest.config.size,) * 2

    fresh = make_store(tmp_path / "fresh")
    pulled = fresh.pull(target)
    assert pulled.manifest_digest == local.manifest_digest  # same bytes, same ID
    assert pulled.model_path.read_bytes() == local.model_path.read_bytes()
    assert read_gguf_info(pulled.model_path).architecture == "llama"
    assert fresh.list()[0].name.full == target
    from llama_cpp import Llama

    llm = Llama(str(pulled.model_path), n_ctx=32, verbose=False)
    assert llm.n_vocab() == 259
    llm.close()


def test_pull_of_a_missing_tag_is_model_not_found(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    with pytest.raises(ModelNotFoundError):
        make_store(tmp_path / "h").pull(f"{registry.host}/team/nothing:1")


def test_second_push_skips_blobs_the_registry_has(registry: RegistryProcess, source: Store) -> None:
    behaviour = FrontBehaviour()
    with registry_front(registry.url, behaviour) as front:
        source.push("tiny", f"{front}/team/tiny:1")
        behaviour.requests.clear()
        again = source.push("tiny", f"{front}/team/tiny:1")
    assert again.uploaded == [] and again.mounted == []
    assert len(again.skipped) == 2  # config and model
    methods = [(r.method, r.path.split("?")[0].rsplit("/", 2)[-2]) for r in behaviour.requests]
    assert methods == [("HEAD", "blobs"), ("HEAD", "blobs"), ("PUT", "manifests")]


def test_push_to_a_second_repository_mounts_instead_of_uploading(
    registry: RegistryProcess, source: Store
) -> None:
    source.push("tiny", f"{registry.host}/team/first:1")
    behaviour = FrontBehaviour()
    # The origin record is per host: push through the front's host both times.
    with registry_front(registry.url, behaviour) as front:
        source.push("tiny", f"{front}/team/first:1")
        behaviour.requests.clear()
        second = source.push("tiny", f"{front}/team/second:1")
    assert second.uploaded == [] and len(second.mounted) == 2
    mounts = [r.path for r in behaviour.requests if r.method == "POST"]
    assert len(mounts) == 2 and all("mount=sha256:" in p and "from=team/first" in p for p in mounts)
    assert not [r for r in behaviour.requests if r.method == "PATCH"]


def test_mount_from_the_local_names_repository(
    registry: RegistryProcess, source: Store, tmp_path: Path
) -> None:
    """A model pulled from host/a/b is mounted from a/b when pushed to host/c/d."""
    source.push("tiny", f"{registry.host}/team/origin:1")
    other = make_store(tmp_path / "other")
    other.pull(f"{registry.host}/team/origin:1")
    (tmp_path / "other" / "registry-origins.json").unlink()  # only the name is left to go by
    result = other.push(f"{registry.host}/team/origin:1", f"{registry.host}/team/copy:1")
    assert len(result.mounted) == 2


def test_chunked_upload_with_small_chunks(
    registry: RegistryProcess, source: Store, tmp_path: Path
) -> None:
    chunk = 64 * 1024
    behaviour = FrontBehaviour()
    with registry_front(registry.url, behaviour) as front:
        result = source.push("tiny", f"{front}/team/chunks:1", chunk_size=chunk)
    local = source.resolve("tiny")
    sizes = [local.manifest.config.size, *(layer.size for layer in local.manifest.layers)]
    patches = [r for r in behaviour.requests if r.method == "PATCH"]
    assert len(patches) == sum(math.ceil(size / chunk) for size in sizes) > 2
    ranges = [r.headers["content-range"] for r in patches]
    assert ranges[1:4] == ["0-65535", "65536-131071", "131072-196607"]  # after the config's
    assert len(result.uploaded) == 2
    pulled = make_store(tmp_path / "fresh").pull(f"{registry.host}/team/chunks:1")
    assert pulled.manifest_digest == local.manifest_digest


def test_basic_auth(source: Store, tmp_path: Path) -> None:
    with docker_registry(tmp_path / "auth", htpasswd_line("alice", "s3cret")) as registry:
        target = f"{registry.host}/team/tiny:1"
        with pytest.raises(RegistryError, match=r"401 unauthorized.*HEARTH_REGISTRY_AUTH"):
            source.push("tiny", target)
        wrong = make_store(tmp_path / "source", HEARTH_REGISTRY_AUTH="alice:wrong")
        with pytest.raises(RegistryError, match="refused"):
            wrong.push("tiny", target)
        good = make_store(tmp_path / "source", HEARTH_REGISTRY_AUTH="alice:s3cret")
        good.push("tiny", target)
        with pytest.raises(RegistryError, match="401"):
            make_store(tmp_path / "anonymous").pull(target)
        # Credentials from a Docker config (`docker login`) work too.
        puller = make_store(tmp_path / "puller")
        auth = base64.b64encode(b"alice:s3cret").decode()
        docker_json = tmp_path / "puller-docker.json"
        docker_json.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        assert puller.pull(target).manifest_digest == source.resolve("tiny").manifest_digest


def test_bearer_token_flow(registry: RegistryProcess, source: Store, tmp_path: Path) -> None:
    """A front that wants a token from a realm (the distribution token flow) before the real
    registry: the client fetches the token with its basic credentials and retries."""
    issuer = TokenServer(token="tok-123", user="bob", password="pw")
    with token_server(issuer) as realm:
        behaviour = FrontBehaviour(token="tok-123", realm=realm)
        with registry_front(registry.url, behaviour) as front:
            target = f"{front}/team/tiny:1"
            with pytest.raises(RegistryError, match="token service"):
                source.push("tiny", target)
            with_creds = make_store(tmp_path / "source", HEARTH_REGISTRY_AUTH="bob:pw")
            with_creds.push("tiny", target)
            puller = make_store(tmp_path / "puller", HEARTH_REGISTRY_AUTH="bob:pw")
            pulled = puller.pull(target)
    assert pulled.manifest_digest == source.resolve("tiny").manifest_digest
    granted = [r for r in issuer.requests if r["authorization"].startswith("Basic ")]
    assert granted and granted[0]["service"] == "front"
    assert granted[0]["scope"] == "repository:team/tiny:pull,push"
    authorised = [r for r in behaviour.requests if r.headers.get("authorization")]
    assert all(r.headers["authorization"] == "Bearer tok-123" for r in authorised)


def test_interrupted_download_resumes_with_a_range_request(
    registry: RegistryProcess, source: Store, tmp_path: Path
) -> None:
    source.push("tiny", f"{registry.host}/team/tiny:1")
    cut = 100_000
    behaviour = FrontBehaviour(drop_blob_after=cut)
    with registry_front(registry.url, behaviour) as front:
        pulled = make_store(tmp_path / "fresh").pull(f"{front}/team/tiny:1")
    assert pulled.manifest_digest == source.resolve("tiny").manifest_digest
    blob_gets = [r for r in behaviour.requests if r.method == "GET" and "/blobs/" in r.path]
    ranges = [r.headers.get("range") for r in blob_gets]
    assert f"bytes={cut}-" in ranges  # the second try asked only for the rest
    assert not list((tmp_path / "fresh" / "blobs").glob(".partial-*"))


def test_partial_file_from_an_earlier_pull_is_resumed(
    registry: RegistryProcess, source: Store, tmp_path: Path
) -> None:
    source.push("tiny", f"{registry.host}/team/tiny:1")
    local = source.resolve("tiny")
    layer = local.manifest.layer(MediaType.MODEL)
    assert layer is not None
    fresh = make_store(tmp_path / "fresh")
    fresh.blobs.root.mkdir(parents=True)
    fresh.blobs.partial_path(layer.digest).write_bytes(local.model_path.read_bytes()[:5000])
    behaviour = FrontBehaviour()
    with registry_front(registry.url, behaviour) as front:
        pulled = fresh.pull(f"{front}/team/tiny:1")
    assert pulled.model_path.read_bytes() == local.model_path.read_bytes()
    assert "bytes=5000-" in [r.headers.get("range") for r in behaviour.requests]


def test_flipped_byte_is_a_digest_mismatch_and_changes_nothing(
    registry: RegistryProcess, source: Store, tmp_path: Path, tiny_chat_gguf: Path
) -> None:
    source.push("tiny", f"{registry.host}/team/tiny:1")
    fresh = make_store(tmp_path / "fresh")
    fresh.import_gguf(tiny_chat_gguf, "already-here")
    before = files_under(tmp_path / "fresh")
    flipping = registry_front(registry.url, FrontBehaviour(flip_blob_byte=True))
    with flipping as front, pytest.raises(DigestMismatchError, match="digest mismatch"):
        fresh.pull(f"{front}/team/tiny:1")
    assert files_under(tmp_path / "fresh") == before


def test_manifest_with_a_path_in_its_digest_is_refused_before_any_file(
    tmp_path: Path, tiny_model: Path
) -> None:
    evil = {
        "schemaVersion": 2,
        "mediaType": MediaType.MANIFEST,
        "config": {"mediaType": MediaType.CONFIG, "digest": "sha256:../../x", "size": 2},
        "layers": [{"mediaType": MediaType.MODEL, "digest": "sha256:../../../x", "size": 2}],
    }
    home = tmp_path / "deep" / "home"
    with (
        serve_static(json.dumps(evil).encode()) as host,
        pytest.raises(StoreError, match="invalid digest"),
    ):
        make_store(home).pull(f"{host}/team/evil:1")
    assert not list(tmp_path.rglob("*"))  # not HEARTH_HOME, not a partial, not "x"


def test_a_model_layer_that_is_not_gguf_is_refused(
    registry: RegistryProcess, source: Store, tmp_path: Path
) -> None:
    local = source.resolve("tiny")
    junk = source.blobs.write_bytes(b"not a model at all")
    manifest = Manifest(
        local.manifest.config, (Descriptor(MediaType.MODEL, junk.digest, junk.size),)
    )
    path = parse_name("junk").manifest_path(source.manifests_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest.to_json())
    source.push("junk", f"{registry.host}/team/junk:1")
    fresh = make_store(tmp_path / "fresh")
    with pytest.raises(InvalidModelFileError, match="not a GGUF"):
        fresh.pull(f"{registry.host}/team/junk:1")
    assert fresh.list() == []


def test_https_is_the_default_for_registries() -> None:
    assert registry_url("registry.example.com") == "https://registry.example.com"
    assert registry_url("ghcr.io:443") == "https://ghcr.io:443"
    assert registry_url("registry.example.com", insecure=True) == "http://registry.example.com"
    assert registry_url("localhost:5000") == "http://localhost:5000"
    assert registry_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registry_url("docker.io") == "https://registry-1.docker.io"


def test_a_non_loopback_registry_is_contacted_over_https(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"https://registry\.invalid"):
        make_store(tmp_path / "h").pull("registry.invalid/team/tiny:1")


def test_credentials_and_challenges_parse() -> None:
    assert Credentials.parse("u:p:q") == Credentials("u", "p:q")
    assert Credentials.parse("hth_token") == Credentials(None, "hth_token")
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }


def test_docker_config_entries(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"me:pw").decode()
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "ghcr.io": {"username": "gh", "password": "tok"},
                }
            }
        )
    )
    assert docker_credentials(config, "docker.io") == Credentials("me", "pw")
    assert docker_credentials(config, "ghcr.io") == Credentials("gh", "tok")
    assert docker_credentials(config, "quay.io") is None
    assert docker_credentials(tmp_path / "missing.json", "ghcr.io") is None


def test_cli_push_and_pull(registry: RegistryProcess, source: Store, tmp_path: Path) -> None:
    target = f"{registry.host}/team/cli:1"
    pushed = run_hearth(source.home, "push", "tiny", target)
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed tiny to {target}" in pushed.stdout
    pulled = run_hearth(tmp_path / "cli-fresh", "pull", target, "--insecure")
    assert pulled.returncode == 0, pulled.stderr
    assert source.resolve("tiny").short_id in pulled.stdout
    missing = run_hearth(source.home, "push", "absent", target)
    assert missing.returncode == 1 and "not found" in missing.stderr


@pytest.mark.gemma
def test_gemma_round_trip(registry: RegistryProcess, gemma_model: Path, tmp_path: Path) -> None:
    """A real 253 MB model through the registry in 8 MiB chunks; it generates after the pull."""
    source = make_store(tmp_path / "gemma-source")
    local = source.import_gguf(gemma_model, "gemma3:270m")
    target = f"{registry.host}/library/gemma3:270m"
    assert len(source.push("gemma3:270m", target).uploaded) == 2
    pulled = make_store(tmp_path / "gemma-fresh").pull(target)
    assert pulled.manifest_digest == local.manifest_digest
    from llama_cpp import Llama

    llm = Llama(str(pulled.model_path), n_ctx=64, n_threads=2, verbose=False)
    text = llm("The sky is", max_tokens=4, temperature=0)["choices"][0]["text"]  # type: ignore[index]
    llm.close()
    assert text.strip()
