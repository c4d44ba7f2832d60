"""OCI registries (the distribution spec) as a model source and destination.

A model already is an OCI artifact (docs/STORE.md), so pulling is: GET the manifest, validate
it (digests checked before any path is built), download the config and every layer into the
blob store (resumable, verified), then write the manifest's own bytes, so the model's ID is the
registry's manifest digest. Pushing is the reverse: each blob is skipped when the registry has
it, mounted from another repository of the same registry when Hearth knows one that holds it,
or uploaded in chunks; the manifest goes last.

Plain HTTP is used only for loopback hosts or with ``insecure``. Credentials are sent only when
a registry asks (a 401 with ``WWW-Authenticate``): Basic, or Bearer with a token fetched from
the challenge's realm (or a bare token used as it is).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from hearth.errors import (
    IncompleteDownloadError,
    ModelNotFoundError,
    RegistryError,
    StoreError,
)
from hearth.log import get_logger
from hearth.store.blobs import Progress, read_chunks
from hearth.store.digest import digest_bytes, validate_digest
from hearth.store.gguf_check import check_gguf
from hearth.store.gguf_shape import read_gguf_shape
from hearth.store.manifest import Descriptor, Manifest, MediaType, ModelConfig
from hearth.store.names import ModelName

if TYPE_CHECKING:
    from hearth.config import Settings
    from hearth.store.store import LocalModel, Store

log = get_logger(__name__)

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
HOST_ALIASES = {"docker.io": "registry-1.docker.io"}  # Docker Hub's API lives elsewhere
DEFAULT_CHUNK_SIZE = 8 * 2**20
MAX_MANIFEST_BYTES = 4 * 2**20
DOWNLOAD_ATTEMPTS = 3
TIMEOUT = httpx.Timeout(30.0, read=300.0)
ORIGINS_FILE = "registry-origins.json"
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


# Where to connect, with what ----------------------------------------------------------------


def host_name(host: str) -> str:
    """``host`` without its port."""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    return host_name(host) in LOOPBACK_HOSTS


def registry_url(host: str, insecure: bool = False) -> str:
    """The registry's base URL: HTTPS unless the host is loopback or ``insecure`` is set."""
    scheme = "http" if insecure or is_loopback(host) else "https"
    return f"{scheme}://{HOST_ALIASES.get(host, host)}"


@dataclass(frozen=True)
class Credentials:
    """``username`` None means ``secret`` is a bearer token (say, a Hearth API key)."""

    username: str | None
    secret: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Credentials:
        user, colon, secret = text.partition(":")
        return cls(user, secret) if colon else cls(None, text)

    @property
    def basic_header(self) -> str:
        raw = f"{self.username or ''}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def find_credentials(host: str, settings: Settings) -> Credentials | None:
    """HEARTH_REGISTRY_AUTH, else the Docker config's ``auths`` entry for ``host``."""
    if settings.registry_auth:
        return Credentials.parse(settings.registry_auth)
    return docker_credentials(settings.docker_config, host)


def docker_credentials(path: Path, host: str) -> Credentials | None:
    """``auths[host]`` of a Docker config (``auth`` is base64 of ``user:password``)."""
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(auths, dict):
        return None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == "docker.io":
        keys.append("https://index.docker.io/v1/")
    entry = next((auths[key] for key in keys if isinstance(auths.get(key), dict)), None)
    if entry is None:
        return None
    if isinstance(entry.get("auth"), str):
        try:
            return Credentials.parse(base64.b64decode(entry["auth"]).decode())
        except ValueError:
            return None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"])
    if isinstance(entry.get("registrytoken"), str):
        return Credentials(None, entry["registrytoken"])
    return None


# The HTTP client ----------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` → ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM_RE.findall(rest))


class RegistryClient:
    """One registry host; remembers the authorization a challenge led to."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None = None,
        *,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.host = host
        self.insecure = insecure
        self.base_url = registry_url(host, insecure)
        self.credentials = credentials
        self._authorization: str | None = None
        self._http = httpx.Client(
            base_url=self.base_url, timeout=TIMEOUT, follow_redirects=True, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Requests, with the 401 → authorize → retry dance.

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        for attempt in range(2):
            request = self._http.build_request(
                method, url, headers=self._headers(headers), content=content
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as error:
                raise RegistryError(self._unreachable(error)) from None
            if response.status_code != 401:
                return response
            if attempt == 1:
                response.close()
                raise RegistryError(self._unauthorized(response))
            response.read()
            response.close()
            self._authorize(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        return headers

    def _authorize(self, response: httpx.Response) -> None:
        header = response.headers.get("www-authenticate", "")
        scheme, params = parse_challenge(header)
        creds = self.credentials
        if scheme == "basic" and creds is not None and creds.username is not None:
            self._authorization = creds.basic_header
        elif scheme == "bearer" and creds is not None and creds.username is None:
            self._authorization = f"Bearer {creds.secret}"
        elif scheme == "bearer" and "realm" in params:
            self._authorization = f"Bearer {self._fetch_token(params)}"
        else:
            raise RegistryError(self._unauthorized(response))

    def _fetch_token(self, params: dict[str, str]) -> str:
        realm = httpx.URL(params["realm"])
        if realm.scheme != "https" and not (self.insecure or is_loopback(realm.host)):
            raise RegistryError(f"registry {self.host} names an insecure token realm {realm}")
        query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
        headers = {}
        if self.credentials is not None and self.credentials.username is not None:
            headers["Authorization"] = self.credentials.basic_header
        try:
            response = httpx.get(realm, params=query, headers=headers, timeout=TIMEOUT)
        except httpx.TransportError as error:
            raise RegistryError(f"cannot reach the token service {realm}: {error}") from None
        if response.status_code != 200:
            raise RegistryError(
                f"the token service {realm} refused us ({response.status_code}): "
                + _credentials_hint(self.host, self.credentials)
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service {realm} answered without a token")
        return token

    def _unreachable(self, error: httpx.TransportError) -> str:
        hint = ""
        if self.base_url.startswith("https://") and "ssl" in str(error).lower():
            hint = " (if it serves plain HTTP, pass --insecure)"
        return f"cannot reach the registry {self.base_url}: {error}{hint}"

    def _unauthorized(self, response: httpx.Response) -> str:
        return (
            f"registry {self.host} answered 401 unauthorized for {response.request.url.path}: "
            + _credentials_hint(self.host, self.credentials)
        )

    # The distribution API.

    def get_manifest(self, repository: str, reference: str) -> bytes:
        response = self.send(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": MediaType.MANIFEST},
        )
        if response.status_code == 404:
            raise ModelNotFoundError(f"{self.host}/{repository}:{reference}")
        _raise_for(response, f"GET manifest {repository}:{reference}")
        data = response.content
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest {repository}:{reference} is over {MAX_MANIFEST_BYTES}")
        claimed = response.headers.get("docker-content-digest")
        if claimed is not None and claimed != digest_bytes(data):
            validate_digest(claimed)
            raise RegistryError(f"manifest {repository}:{reference} does not match {claimed}")
        return data

    def put_manifest(self, repository: str, tag: str, data: bytes) -> None:
        response = self.send(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            headers={"Content-Type": MediaType.MANIFEST},
            content=data,
        )
        _raise_for(response, f"PUT manifest {repository}:{tag}")

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.send("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return False
        _raise_for(response, f"HEAD blob {digest}")
        return True

    def blob_range(self, repository: str, digest: str) -> Callable[[int], Iterator[bytes]]:
        """``open_range`` for BlobStore.download: the blob from a byte offset on."""

        def open_range(offset: int) -> Iterator[bytes]:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            url = f"/v2/{repository}/blobs/{digest}"
            response = self.send("GET", url, headers=headers, stream=True)
            try:
                if response.status_code not in (200, 206):
                    response.read()
                    _raise_for(response, f"GET blob {digest}")
                # A server that ignores Range sends it all: skip what we already have.
                skip = offset if response.status_code == 200 else 0
                for chunk in response.iter_bytes():
                    if skip:
                        chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                    if chunk:
                        yield chunk
            finally:
                response.close()

        return open_range

    def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """Ask the registry to link ``digest`` from ``source``: None when it did; else the
        upload it started instead (its Location), to upload into."""
        response = self.send(
            "POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source}"
        )
        if response.status_code == 201:
            return None
        _raise_for(response, f"mount {digest} from {source}")
        return _location(response)

    def start_upload(self, repository: str) -> str:
        response = self.send("POST", f"/v2/{repository}/blobs/uploads/")
        _raise_for(response, f"start an upload to {repository}")
        return _location(response)

    def upload_blob(
        self,
        location: str,
        path: Path,
        digest: str,
        chunk_size: int,
        progress: Callable[[int], None],
    ) -> None:
        """PATCH ``path`` in chunks of ``chunk_size`` (Content-Range), then PUT ?digest=."""
        offset = 0
        for chunk in read_chunks(path, chunk_size):
            end = offset + len(chunk) - 1
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{end}",
            }
            response = self.send("PATCH", location, headers=headers, content=chunk)
            _raise_for(response, f"upload {digest} bytes {offset}-{end}")
            location = _location(response)
            offset = end + 1
            progress(offset)
        url = httpx.URL(self.base_url).join(location).copy_merge_params({"digest": digest})
        response = self.send("PUT", str(url), headers={"Content-Length": "0"}, content=b"")
        _raise_for(response, f"finish the upload of {digest}")


def _location(response: httpx.Response) -> str:
    location: str = response.headers.get("location", "")
    if not location:
        raise RegistryError(f"{response.request.url.path}: the registry sent no upload Location")
    return location


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    raise RegistryError(f"{what}: {response.status_code} {_error_text(response)}")


def _error_text(response: httpx.Response) -> str:
    """The distribution spec's ``{"errors": [{"code", "message"}]}``, else the status text."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError, httpx.ResponseNotRead):
        return response.reason_phrase


def _credentials_hint(host: str, credentials: Credentials | None) -> str:
    if credentials is None:
        return f"set HEARTH_REGISTRY_AUTH=user:password or run `docker login {host}`"
    return "the credentials were refused (HEARTH_REGISTRY_AUTH or ~/.docker/config.json)"


# Pull ---------------------------------------------------------------------------------------


def pull_from_registry(
    store: Store,
    wanted: ModelName,
    progress: Progress | None = None,
    *,
    insecure: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> LocalModel:
    """Pull ``host/ns/name:tag`` into ``store``; the local manifest is the registry's bytes."""
    repository = f"{wanted.namespace}/{wanted.name}"
    credentials = find_credentials(wanted.host, store.settings)
    with RegistryClient(wanted.host, credentials, insecure=insecure, transport=transport) as client:
        data = client.get_manifest(repository, wanted.tag)
        manifest = parse_remote_manifest(data, f"{wanted.full} (from the registry)")
        stored = _stored_digest(store, wanted) == digest_bytes(data)
        if stored and all(store.blobs.has(digest) for digest in manifest.digests()):
            model = store.resolve(wanted.full)
            if progress is not None:
                progress(model.size, model.size)
            return model
        blobs = [manifest.config, *manifest.layers]
        _download_all(client, store, repository, blobs, progress)
        _check_content(store, manifest)
        model = store.commit_manifest(
            wanted, data, lambda missing: _download_all(client, store, repository, missing, None)
        )
    OriginLog(store.home).record(wanted.host, repository, manifest.digests())
    return model


def _stored_digest(store: Store, name: ModelName) -> str | None:
    try:
        return digest_bytes(name.manifest_path(store.manifests_dir).read_bytes())
    except OSError:
        return None


def parse_remote_manifest(data: bytes, origin: str) -> Manifest:
    """Validate a manifest from elsewhere before a single path is built from it."""
    manifest = Manifest.from_json(data, origin)  # validates every digest
    if manifest.layer(MediaType.MODEL) is None:
        raise StoreError(f"{origin}: not a Hearth model (no {MediaType.MODEL} layer)")
    return manifest


def _download_all(
    client: RegistryClient,
    store: Store,
    repository: str,
    blobs: list[Descriptor],
    progress: Progress | None,
) -> None:
    total = sum(blob.size for blob in blobs)
    done_before = 0
    for blob in blobs:

        def report(done: int, _: int | None, base: int = done_before) -> None:
            if progress is not None:
                progress(base + done, total)

        _download(client, store, repository, blob, report)
        done_before += blob.size


def _download(
    client: RegistryClient, store: Store, repository: str, blob: Descriptor, progress: Progress
) -> None:
    """One blob, resuming from the partial file up to DOWNLOAD_ATTEMPTS times."""
    open_range = client.blob_range(repository, blob.digest)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            store.blobs.download(blob.digest, blob.size, open_range, progress)
            return
        except (IncompleteDownloadError, httpx.TransportError) as error:
            log.info("download of %s interrupted (%s); resuming", blob.digest, error)
            if attempt == DOWNLOAD_ATTEMPTS:
                raise IncompleteDownloadError(
                    f"download of {blob.digest} failed {attempt} times ({error}); "
                    "pull again to resume"
                ) from None


def _check_content(store: Store, manifest: Manifest) -> None:
    """The config must parse and the model layer must be a GGUF whose metadata reads (the fast
    header scan: a full read_gguf_info takes gguf-py tens of seconds for Gemma's vocabulary)."""
    ModelConfig.from_json(store.blobs.read_bytes(manifest.config.digest), "pulled config")
    model_layer = manifest.layer(MediaType.MODEL)
    assert model_layer is not None  # parse_remote_manifest checked
    check_gguf(store.blobs.path(model_layer.digest))  # untrusted bytes: bounds before anything
    read_gguf_shape(store.blobs.path(model_layer.digest))


# Push ---------------------------------------------------------------------------------------


@dataclass
class PushResult:
    target: ModelName
    manifest_digest: str
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the repository


def push_to_registry(
    store: Store,
    source: ModelName,
    manifest_bytes: bytes,
    target: ModelName,
    progress: Progress | None = None,
    *,
    insecure: bool = False,
    chunk_size: int | None = None,
    transport: httpx.BaseTransport | None = None,
) -> PushResult:
    """Push the local model ``source`` (whose manifest is ``manifest_bytes``) to ``target``."""
    repository = f"{target.namespace}/{target.name}"
    origins = OriginLog(store.home)
    manifest = Manifest.from_json(manifest_bytes, str(source))
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
    blobs = [manifest.config, *manifest.layers]
    total = sum(blob.size for blob in blobs)
    result = PushResult(target, digest_bytes(manifest_bytes))
    credentials = find_credentials(target.host, store.settings)
    with RegistryClient(target.host, credentials, insecure=insecure, transport=transport) as client:
        done = 0
        for blob in blobs:
            candidates = _mount_sources(origins, source, target, blob.digest)

            def report(sent: int, base: int = done) -> None:
                if progress is not None:
                    progress(base + sent, total)

            how = _push_blob(client, store, repository, blob, candidates, chunk_size, report)
            getattr(result, how).append(blob.digest)
            done += blob.size
            if progress is not None:  # skipped and mounted blobs count as sent
                progress(done, total)
        client.put_manifest(repository, target.tag, manifest_bytes)
    origins.record(target.host, repository, manifest.digests())
    return result


def _mount_sources(
    origins: OriginLog, source: ModelName, target: ModelName, digest: str
) -> list[str]:
    """Repositories on the target's registry that should hold ``digest``: one a pull or push
    recorded, and the local model's own repository when it was named after that registry."""
    repository = f"{target.namespace}/{target.name}"
    candidates = origins.sources(target.host, digest, exclude=repository)
    own = f"{source.namespace}/{source.name}"
    if source.host == target.host and own != repository and own not in candidates:
        candidates.append(own)
    return candidates


def _push_blob(
    client: RegistryClient,
    store: Store,
    repository: str,
    blob: Descriptor,
    mount_from: list[str],
    chunk_size: int,
    progress: Callable[[int], None],
) -> str:
    """Skip, mount or upload one blob; returns which (a PushResult field name)."""
    if client.has_blob(repository, blob.digest):
        return "skipped"
    location: str | None = None
    for source in mount_from:
        location = client.mount_blob(repository, blob.digest, source)
        if location is None:
            return "mounted"
    path = store.blobs.path(blob.digest)
    if not path.is_file():
        raise StoreError(f"blob {blob.digest} is missing from the store; pull the model again")
    location = location or client.start_upload(repository)
    client.upload_blob(location, path, blob.digest, chunk_size, progress)
    return "uploaded"


# Which repositories hold which blobs (for cross-repository mounts) --------------------------


class OriginLog:
    """``HEARTH_HOME/registry-origins.json``: per registry host, blob digest → a repository
    known to hold it (from a pull or push), so a push to a sibling repository can mount."""

    def __init__(self, home: Path) -> None:
        self.path = home / ORIGINS_FILE

    def sources(self, host: str, digest: str, exclude: str) -> list[str]:
        repo = self._read().get(host, {}).get(digest)
        return [repo] if repo is not None and repo != exclude else []

    def record(self, host: str, repository: str, digests: set[str]) -> None:
        # Best effort: losing a record only costs an upload instead of a mount.
        data = self._read()
        data.setdefault(host, {}).update({digest: repository for digest in digests})
        temp = self.path.with_name(f".tmp-{ORIGINS_FILE}.{os.getpid()}")
        try:
            temp.write_text(json.dumps(data))
            os.replace(temp, self.path)
        except OSError as error:
            log.warning("cannot record registry origins in %s: %s", self.path, error)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
