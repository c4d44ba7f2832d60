from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import InvalidNameError
from hearth.store.names import ModelName, name_from_manifest_path, parse_name

VALID = [
    # text, (host, namespace, name, tag), display
    ("gemma3", ("hearth.local", "library", "gemma3", "latest"), "gemma3:latest"),
    ("gemma3:270m", ("hearth.local", "library", "gemma3", "270m"), "gemma3:270m"),
    ("Gemma3:270M", ("hearth.local", "library", "gemma3", "270M"), "gemma3:270M"),
    ("all-minilm:l6-v2", ("hearth.local", "library", "all-minilm", "l6-v2"), "all-minilm:l6-v2"),
    ("library/gemma3:270m", ("hearth.local", "library", "gemma3", "270m"), "gemma3:270m"),
    (
        "acme/support-bot",
        ("hearth.local", "acme", "support-bot", "latest"),
        "acme/support-bot:latest",
    ),
    ("acme/bot:v1.2", ("hearth.local", "acme", "bot", "v1.2"), "acme/bot:v1.2"),
    (
        "hearth.local/library/gemma3:270m",
        ("hearth.local", "library", "gemma3", "270m"),
        "gemma3:270m",
    ),
    (
        "hf.co/ggml-org/gemma-3-1b-it-GGUF:Q4_K_M",
        ("hf.co", "ggml-org", "gemma-3-1b-it-gguf", "Q4_K_M"),
        "hf.co/ggml-org/gemma-3-1b-it-gguf:Q4_K_M",
    ),
    (
        "huggingface.co/Org/Repo:Q8_0",
        ("hf.co", "org", "repo", "Q8_0"),
        "hf.co/org/repo:Q8_0",
    ),
    ("HF.CO/org/repo", ("hf.co", "org", "repo", "latest"), "hf.co/org/repo:latest"),
    (
        "localhost:5000/team/model:1",
        ("localhost:5000", "team", "model", "1"),
        "localhost:5000/team/model:1",
    ),
    (
        "localhost/model",
        ("localhost", "library", "model", "latest"),
        "localhost/library/model:latest",
    ),
    (
        "localhost:5000/model:dev",
        ("localhost:5000", "library", "model", "dev"),
        "localhost:5000/library/model:dev",
    ),
    (
        "registry.example.com/ns/name:tag",
        ("registry.example.com", "ns", "name", "tag"),
        "registry.example.com/ns/name:tag",
    ),
    (
        "ghcr.io/acme/llama_3.1-8b:q4",
        ("ghcr.io", "acme", "llama_3.1-8b", "q4"),
        "ghcr.io/acme/llama_3.1-8b:q4",
    ),
    ("model:_private", ("hearth.local", "library", "model", "_private"), "model:_private"),
    ("a" * 80, ("hearth.local", "library", "a" * 80, "latest"), "a" * 80 + ":latest"),
    ("m:" + "t" * 128, ("hearth.local", "library", "m", "t" * 128), "m:" + "t" * 128),
    ("qwen2.5:0.5b", ("hearth.local", "library", "qwen2.5", "0.5b"), "qwen2.5:0.5b"),
]


@pytest.mark.parametrize(("text", "parts", "display"), VALID)
def test_valid_names(text: str, parts: tuple[str, str, str, str], display: str) -> None:
    name = parse_name(text)
    assert (name.host, name.namespace, name.name, name.tag) == parts
    assert str(name) == display
    assert parse_name(str(name)) == name  # the display form parses back to the same name


INVALID = [
    ("", "empty"),
    (" gemma3", "whitespace"),
    ("gemma 3", "whitespace"),
    ("gemma3\t:1b", "whitespace"),
    ("/gemma3", "must not start with '/'"),
    ("../gemma3", r"'\.\.'"),
    ("acme/../etc", r"'\.\.'"),
    ("a..b", r"'\.\.'"),
    ("gemma3:v..1", r"'\.\.'"),
    ("a/b/c/d", "4 parts; at most 3"),
    ("hf.co/org/repo/extra:Q4", "4 parts"),
    ("acme//bot", "empty part"),
    ("acme/", "empty part"),
    ("gemma3:", "empty tag"),
    (":270m", "empty name"),
    ("gemma3@sha256:" + "a" * 64, "digest reference"),
    ("https://hf.co/org/repo", r"drop 'https://'"),
    ("acme/team/bot", "must be a host"),
    ("-gemma", "invalid name '-gemma'"),
    (".hidden", "invalid name '.hidden'"),
    ("gem$ma", "invalid name"),
    ("gemma3:-x", "invalid tag '-x'"),
    ("gemma3:.x", "invalid tag"),
    ("gemma3:a/b", "invalid host 'gemma3:a'"),
    ("m:" + "t" * 129, "invalid tag"),
    ("a" * 81, "at most 80"),
    ("x" * 81 + "/model", "namespace is 81 characters"),
    ("-ns/model", "invalid namespace"),
    ("bad_host.com/ns/model", "invalid host"),
    ("host.com:99999/ns/model", "invalid host"),
    ("host.com:port/ns/model", "invalid host"),
    ("a:b:c", "invalid name 'a:b'"),
    ("hf.co/repo", "hf.co/<org>/<repo>"),
    ("back\\slash", "invalid name"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_names(text: str, message: str) -> None:
    with pytest.raises(InvalidNameError, match=message):
        parse_name(text)


def test_invalid_name_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_name("a/b/c/d")


@pytest.mark.parametrize(
    ("text", "relative"),
    [
        ("gemma3:270m", "hearth.local/library/gemma3/270m"),
        ("localhost:5000/team/model:1", "localhost_5000/team/model/1"),
        ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo/Q4_K_M"),
    ],
)
def test_manifest_path_round_trip(tmp_path: Path, text: str, relative: str) -> None:
    name = parse_name(text)
    path = name.manifest_path(tmp_path)
    assert path == tmp_path / relative
    assert name_from_manifest_path(tmp_path, path) == name


@pytest.mark.parametrize(
    "relative",
    [
        "hearth.local/library/gemma3/.tmp-abc",  # a manifest being written
        "hearth.local/library/Gemma3/latest",  # we never write upper case
        "hearth.local/library/gemma3",  # too shallow
        "nohost/library/gemma3/latest",  # not a host
    ],
)
def test_foreign_paths_are_not_manifests(tmp_path: Path, relative: str) -> None:
    assert name_from_manifest_path(tmp_path, tmp_path / relative) is None


def test_names_are_values() -> None:
    assert parse_name("GEMMA3") == parse_name("gemma3:latest")
    assert parse_name("gemma3:Q4") != parse_name("gemma3:q4")  # tags keep their case
    assert ModelName("hearth.local", "library", "x", "latest").full == (
        "hearth.local/library/x:latest"
    )
