"""Model names: ``[host[:port]/][namespace/]name[:tag]``, parsed like Ollama's and Docker's.

Defaults: host ``hearth.local``, namespace ``library``, tag ``latest``. So ``gemma3:270m`` is
``hearth.local/library/gemma3:270m``, and ``acme/bot`` is ``hearth.local/acme/bot:latest``.

- The first of two or three parts is a host when it contains ``.`` or ``:`` or is ``localhost``
  (``localhost:5000/bot``, ``hf.co/org/repo:Q4_K_M``); with three parts it must be one.
- ``huggingface.co`` (and ``www.`` forms) are normalised to ``hf.co``.
- Host, namespace and name are case-insensitive and stored lowercase; the tag keeps its case
  (quantization tags such as ``Q4_K_M`` are conventionally upper case).
- Digest references (``name@sha256:...``) are rejected for now with a message saying so: nothing
  in the store addresses a manifest by digest yet.

``str(name)`` is the short display form: defaults are left out, the tag never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import InvalidNameError

DEFAULT_HOST = "hearth.local"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOST = "hf.co"
_HF_ALIASES = frozenset({"huggingface.co", "www.huggingface.co", "www.hf.co"})

MAX_NAME_LENGTH = 80
_COMPONENT_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST_RE = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::(?P<port>[0-9]{1,5}))?")
_PORT_SEPARATOR_ON_DISK = "_"  # ':' is not portable in paths; hosts never contain '_'


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    name: str
    tag: str

    def __str__(self) -> str:
        if self.host != DEFAULT_HOST:
            return self.full
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.name}:{self.tag}"
        return f"{self.name}:{self.tag}"

    @property
    def full(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.namespace}/{self.name}"

    @property
    def is_huggingface(self) -> bool:
        return self.host == HF_HOST

    def manifest_path(self, root: Path) -> Path:
        host_dir = self.host.replace(":", _PORT_SEPARATOR_ON_DISK)
        return root / host_dir / self.namespace / self.name / self.tag


def parse_name(text: str) -> ModelName:
    """Parse and validate a model name; InvalidNameError says what is wrong."""
    _check_shape(text)
    parts = text.split("/")
    if len(parts) > 3:
        raise InvalidNameError(
            f"model name {text!r} has {len(parts)} parts; at most 3 (host/namespace/name)"
        )
    if "" in parts:
        raise InvalidNameError(f"model name {text!r} has an empty part between '/'")
    host, namespace = _host_and_namespace(text, parts[:-1])
    name, tag = _name_and_tag(text, parts[-1])
    return _validated(text, host, namespace, name, tag)


def name_from_manifest_path(root: Path, path: Path) -> ModelName | None:
    """The name whose manifest lives at ``path``, or None if ``path`` is not one of ours."""
    if not path.is_relative_to(root):
        return None
    parts = path.relative_to(root).parts
    if len(parts) != 4:
        return None
    host = parts[0].replace(_PORT_SEPARATOR_ON_DISK, ":")
    try:
        name = parse_name(f"{host}/{parts[1]}/{parts[2]}:{parts[3]}")
    except InvalidNameError:
        return None
    # A directory we would not have written (say, upper case) is not a manifest of ours.
    return name if name.manifest_path(root) == path else None


def _check_shape(text: str) -> None:
    if not isinstance(text, str) or not text:
        raise InvalidNameError("model name is empty")
    if any(ch.isspace() for ch in text):
        raise InvalidNameError(f"model name {text!r} contains whitespace")
    if not text.isascii():  # before lower(): the Kelvin sign would fold into an ASCII "k"
        raise InvalidNameError(f"model name {text!r} contains non-ASCII characters")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidNameError(
            f"model name {text!r} is a URL: drop '{scheme}://' (for example hf.co/org/repo:Q4_K_M)"
        )
    if "@" in text:
        raise InvalidNameError(
            f"model name {text!r} is a digest reference; name@sha256:... is not supported yet, "
            "use name:tag"
        )
    if text.startswith("/"):
        raise InvalidNameError(f"model name {text!r} must not start with '/'")
    if ".." in text:
        raise InvalidNameError(f"model name {text!r} must not contain '..'")


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part.lower() == "localhost"


def _host_and_namespace(text: str, prefix: list[str]) -> tuple[str, str]:
    if not prefix:
        return DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(prefix) == 1:
        if _looks_like_host(prefix[0]):
            return prefix[0], DEFAULT_NAMESPACE
        return DEFAULT_HOST, prefix[0]
    if not _looks_like_host(prefix[0]):
        raise InvalidNameError(
            f"model name {text!r}: the first of three parts must be a host "
            f"(containing '.' or ':', or 'localhost'), got {prefix[0]!r}"
        )
    return prefix[0], prefix[1]


def _name_and_tag(text: str, last: str) -> tuple[str, str]:
    name, colon, tag = last.rpartition(":")
    if not colon:
        return last, DEFAULT_TAG
    if not name:
        raise InvalidNameError(f"model name {text!r} has an empty name before ':'")
    if not tag:
        raise InvalidNameError(f"model name {text!r} has an empty tag after ':'")
    return name, tag


def _validated(text: str, host: str, namespace: str, name: str, tag: str) -> ModelName:
    host = _normalise_host(text, host.lower())
    namespace, name = namespace.lower(), name.lower()
    _check_component(text, "namespace", namespace)
    _check_component(text, "name", name)
    if _TAG_RE.fullmatch(tag) is None:
        raise InvalidNameError(
            f"model name {text!r} has an invalid tag {tag!r}: use letters, digits, '_', '.', '-' "
            "(at most 128, not starting with '.' or '-')"
        )
    if host == HF_HOST and namespace == DEFAULT_NAMESPACE:
        raise InvalidNameError(
            f"model name {text!r}: Hugging Face names have the form hf.co/<org>/<repo>[:<quant>]"
        )
    return ModelName(host, namespace, name, tag)


def _normalise_host(text: str, host: str) -> str:
    match = _HOST_RE.fullmatch(host)
    port = match.group("port") if match else None
    if match is None or (port is not None and not 0 < int(port) <= 65535):
        raise InvalidNameError(
            f"model name {text!r} has an invalid host {host!r}: use letters, digits, '.', '-' "
            "and an optional :port"
        )
    return HF_HOST if host in _HF_ALIASES else host


def _check_component(text: str, what: str, value: str) -> None:
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"model name {text!r}: {what} is {len(value)} characters; at most {MAX_NAME_LENGTH}"
        )
    if _COMPONENT_RE.fullmatch(value) is None:
        raise InvalidNameError(
            f"model name {text!r} has an invalid {what} {value!r}: use letters, digits, '.', '_', "
            "'-', starting with a letter or digit"
        )
