"""Model names and digests from anywhere (CLI, API, manifests, registries): a parsed name or
digest never leads to a path outside the store, whatever the text: ``..``, absolute paths, NUL,
backslashes, Unicode look-alikes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import InvalidDigestError, InvalidNameError
from hearth.store.blobs import BlobStore
from hearth.store.digest import blob_filename, digest_from_filename, validate_digest
from hearth.store.names import ModelName, name_from_manifest_path, parse_name

ROOT = Path("/store/manifests")
BLOBS = Path("/store/blobs")

# Pieces that have broken path handling elsewhere, mixed with the characters names are made of.
TRICKS = [
    "..",
    ".",
    "/",
    "//",
    "\\",
    "\0",
    ":",
    "@",
    "%2e%2e",
    "%2f",
    "~",
    "\u2024",  # one dot leader
    "\u2025",  # two dot leader
    "\uff0e",  # fullwidth full stop
    "\uff0f",  # fullwidth solidus
    "\u2215",  # division slash
    "\u212a",  # Kelvin sign: lower() gives ASCII "k"
    "\u0130",  # dotted capital I: lower() gives two characters
    "\u017f",  # long s
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "e\u0301",  # combining accent
    "\ud7ff",
    "localhost",
    "hf.co",
    "registry.example.com:5000",
    "library",
    "latest",
    "sha256",
]
name_text = st.lists(
    st.sampled_from(TRICKS) | st.text(alphabet="abcXYZ019._-:/", max_size=6), max_size=8
).map("".join) | st.text(max_size=40)


def _inside(path: Path, root: Path) -> bool:
    resolved = Path(os.path.normpath(path))
    return "\0" not in str(path) and resolved.is_relative_to(root) and resolved != root


@given(text=name_text)
def test_a_parsed_name_always_maps_inside_the_manifest_root(text: str) -> None:
    try:
        name = parse_name(text)
    except InvalidNameError:
        return
    path = name.manifest_path(ROOT)
    assert _inside(path, ROOT), f"{text!r} → {path}"
    assert path.relative_to(ROOT).parts == (
        name.host.replace(":", "_"),
        name.namespace,
        name.name,
        name.tag,
    )
    assert text.isascii()  # no Unicode folds into an ASCII name (Kelvin sign → "k")
    assert parse_name(name.full) == name  # the canonical form parses to the same name
    assert name_from_manifest_path(ROOT, path) == name


@pytest.mark.parametrize(
    "text",
    [
        "../x",
        "a/../../x",
        "..:latest",
        "x:..",
        "/etc/passwd",
        "a/b/c/d",
        "a\0b",
        "a\\..\\b",
        "gemma\u212a:270m",
        "\uff0e\uff0e/x",
        "x:\u2024\u2024",
        "host:99999/a/b",
        "",
    ],
)
def test_known_traversal_shapes_are_refused(text: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_name(text)


@given(parts=st.lists(st.sampled_from(TRICKS) | st.text(max_size=6), min_size=1, max_size=6))
def test_a_path_under_the_root_parses_back_only_to_itself(parts: list[str]) -> None:
    path = ROOT.joinpath(*[p.replace("\0", "") or "x" for p in parts])
    name = name_from_manifest_path(ROOT, path)
    if name is not None:
        assert name.manifest_path(ROOT) == path and isinstance(name, ModelName)


digest_text = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda prefix, body, suffix: prefix + body + suffix,
        st.sampled_from(["sha256:", "SHA256:", "sha512:", "sha256-", "", "sha256:../"]),
        st.text(alphabet="0123456789abcdefABCDEF./\\\0", min_size=60, max_size=68),
        st.sampled_from(["", "\n", "/..", "\0", " "]),
    ),
)


@given(text=digest_text)
def test_a_valid_digest_always_names_a_file_directly_in_the_blob_directory(text: str) -> None:
    try:
        digest = validate_digest(text)
    except InvalidDigestError:
        with pytest.raises(InvalidDigestError):
            BlobStore(BLOBS).path(text)
        return
    assert digest == text and len(text) == 71
    path = BlobStore(BLOBS).path(digest)
    assert path.parent == BLOBS and _inside(path, BLOBS)
    assert digest_from_filename(blob_filename(digest)) == digest


@given(filename=st.text(max_size=80))
def test_a_file_name_is_a_blob_only_in_the_canonical_form(filename: str) -> None:
    digest = digest_from_filename(filename)
    if digest is not None:
        assert blob_filename(digest) == filename
