"""Coverage-guided fuzzing of Hearth's untrusted-file checks with atheris (libFuzzer).

    .venv/bin/pip install atheris                      # not a project dependency
    .venv/bin/python fuzz/atheris_gguf.py --make-corpus fuzz/corpus/gguf
    .venv/bin/python fuzz/atheris_gguf.py fuzz/corpus/gguf -max_total_time=600 -rss_limit_mb=2048

``HEARTH_FUZZ_TARGET=safetensors`` fuzzes the safetensors header check instead. The property is
the one tests/fuzz checks with hypothesis: the check returns a layout or raises
MalformedFileError; what passes it, the store's header reader parses or refuses with an
InvalidModelFileError. Anything else (another exception, a timeout, more than ``-rss_limit_mb``)
is a finding: libFuzzer writes the input to ``crash-*`` / ``timeout-*`` / ``oom-*``. See
docs/FUZZING.md.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from hearth.errors import InvalidModelFileError, MalformedFileError
    from hearth.store.gguf_check import check_gguf_bytes
    from hearth.store.gguf_shape import parse_gguf_header
    from hearth.store.safetensors_check import read_safetensors_header


def fuzz_gguf(data: bytes) -> None:
    try:
        check_gguf_bytes(data)
    except MalformedFileError:
        return
    with contextlib.suppress(InvalidModelFileError):
        parse_gguf_header(data)


def fuzz_safetensors(data: bytes) -> None:
    with contextlib.suppress(MalformedFileError):
        read_safetensors_header(io.BytesIO(data), len(data), "fuzz")


def make_corpus(directory: Path) -> None:
    """Seed inputs: tiny GGUFs (float and Q8_0) and a small safetensors file."""
    import numpy as np
    from safetensors.numpy import save

    from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf

    directory.mkdir(parents=True, exist_ok=True)
    small = TinyModelSpec(n_layers=1, n_embd=32, n_heads=2, n_kv_heads=1, n_ff=32)
    write_tiny_gguf(directory / "tiny-f32.gguf", small)
    write_tiny_gguf(directory / "tiny-q8.gguf", TinyModelSpec(n_layers=1, quantized=True))
    tensors = {"w": np.ones((2, 3), dtype=np.float32), "b": np.zeros(3, dtype=np.float16)}
    (directory / "small.safetensors").write_bytes(save(tensors))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(Path(sys.argv[2]))
        return
    import os  # the fuzzer's own switch, not a Hearth setting

    target = (
        fuzz_safetensors if os.environ.get("HEARTH_FUZZ_TARGET") == "safetensors" else fuzz_gguf
    )
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
