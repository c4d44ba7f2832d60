"""The planner: weight estimates against llama.cpp's real quantizer, the plan's arithmetic, and
reading a GGUF header over HTTP Range requests from a real local server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.errors import InvalidModelFileError, ValidationError
from hearth.plan import (
    PlanRequest,
    make_plan,
    parse_meminfo,
    read_local_header,
    read_remote_gguf_shape,
    weights_bytes,
)
from hearth.store.quantize import QuantizeOptions, parse_quant_type, quantize_gguf

MIB = 2**20
SPEC = TinyModelSpec(n_embd=256, n_ff=512, n_layers=8)


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("plan") / "tiny-f32.gguf", SPEC)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M", "Q5_K_M", "Q4_0", "Q6_K", "F16"])
def test_weight_estimate_matches_llama_cpp(f32_model: Path, tmp_path: Path, quant: str) -> None:
    name, ftype = parse_quant_type(quant)
    target = tmp_path / f"{name}.gguf"
    quantize_gguf(f32_model, target, QuantizeOptions(ftype, threads=2))
    estimated = weights_bytes(read_local_header(f32_model).header, quant)
    assert estimated == pytest.approx(target.stat().st_size, rel=0.01)


def test_plan_rows_recommendation_and_max_context(f32_model: Path) -> None:
    header = read_local_header(f32_model)
    roomy = make_plan(header, PlanRequest(context=512, parallel=2, memory=1 << 30))
    assert roomy.quantization == "F32" and roomy.recommended == "F16"
    assert roomy.max_context == SPEC.context_length
    assert [row.quant for row in roomy.rows][:2] == ["F32", "F16"]  # largest weights first
    q4 = next(row for row in roomy.rows if row.quant == "Q4_0")
    tight = make_plan(header, PlanRequest(context=512, parallel=2, memory=q4.estimate.total))
    assert tight.recommended == "Q4_0"
    assert 0 < tight.max_context < SPEC.context_length or tight.max_context == 0


def test_a_q8_kv_cache_is_about_half_of_f16(f32_model: Path) -> None:
    header = read_local_header(f32_model)
    f16 = make_plan(header, PlanRequest(context=2048, parallel=4, memory=1 << 30))
    q8 = make_plan(header, PlanRequest(context=2048, parallel=4, memory=1 << 30, kv_type="q8_0"))
    ratio = q8.rows[0].estimate.kv_cache / f16.rows[0].estimate.kv_cache
    assert ratio == pytest.approx(34 / 64)
    with pytest.raises(ValidationError, match="kv_type"):
        make_plan(header, PlanRequest(context=2048, parallel=4, memory=1, kv_type="q3"))


def test_meminfo_is_read_in_bytes() -> None:
    text = (
        "MemTotal:       16316412 kB\nMemFree:  1000 kB\n"
        "MemAvailable:   8000000 kB\nHugePages_Total: 0\n"
    )
    info = parse_meminfo(text)
    assert info["MemTotal"] == 16316412 * 1024
    assert info["MemAvailable"] == 8000000 * 1024
    assert info["HugePages_Total"] == 0


class RangeServer(BaseHTTPRequestHandler):
    """Serves one file; honours ``Range: bytes=a-b`` unless ``ignore_range`` is set."""

    body = b""
    ignore_range = False
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        wanted = self.headers.get("Range", "")
        type(self).requests.append(wanted)
        if wanted.startswith("bytes=") and not self.ignore_range:
            start, end = (int(x) for x in wanted.removeprefix("bytes=").split("-"))
            end = min(end, len(self.body) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(self.body)}")
            chunk = self.body[start : end + 1]
        else:
            self.send_response(200)
            chunk = self.body
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client stopped early
            self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes, *, ignore_range: bool = False) -> str:
        handler = type(
            "Handler", (RangeServer,), {"body": body, "ignore_range": ignore_range, "requests": []}
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        start.handler = handler  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{server.server_address[1]}/model.gguf"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_remote_header_read_with_range_requests(serve: object, tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "big-vocab.gguf", TinyModelSpec())
    local = read_local_header(path)
    url = serve(path.read_bytes())  # type: ignore[operator]
    remote = read_remote_gguf_shape(url, {"Authorization": "Bearer x"})
    assert remote.header == local.header
    assert remote.file_size == path.stat().st_size
    requests = serve.handler.requests  # type: ignore[attr-defined]
    assert requests == ["bytes=0-1048575"]  # one range: the header fits the first MiB


def test_remote_header_grows_the_range_until_it_parses(serve: object, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "long-header.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_token_list([f"token-{i:08d}-{'x' * 40}" for i in range(40_000)])  # ~2.5 MB
    writer.add_tensor("output_norm.weight", np.ones(16, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    url = serve(path.read_bytes())  # type: ignore[operator]
    remote = read_remote_gguf_shape(url)
    assert remote.header.shape.n_vocab == 40_000
    assert [t.name for t in remote.header.tensors] == ["output_norm.weight"]
    assert serve.handler.requests == ["bytes=0-1048575", "bytes=0-4194303"]  # type: ignore[attr-defined]


def test_a_server_ignoring_range_still_works(serve: object, f32_model: Path) -> None:
    url = serve(f32_model.read_bytes(), ignore_range=True)  # type: ignore[operator]
    remote = read_remote_gguf_shape(url)
    assert remote.header.shape.n_layers == SPEC.n_layers
    assert remote.file_size == f32_model.stat().st_size


def test_a_remote_file_that_is_not_gguf_is_refused(serve: object) -> None:
    url = serve(b"<html>not a model</html>")  # type: ignore[operator]
    with pytest.raises(InvalidModelFileError, match="not a GGUF"):
        read_remote_gguf_shape(url)
