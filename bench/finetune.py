"""Seconds per step and peak memory of LoRA and QLoRA training on Gemma 3 270M, on this machine.

    .venv/bin/python bench/finetune.py [--steps 5] [--rank 16] [--seq 256] [--batch 4]

Each method runs in its own child process (so its peak RSS is its own): the base is loaded from
the store's GGUF as `hearth finetune` loads it (bf16 where the CPU has AVX512-BF16, else fp32;
QLoRA: NF4 with bf16 compute), a rank-16 adapter is put on every linear projection, and batches of
4 sequences of 256 random tokens (loss on every token) are trained. The first step is a warm-up;
the figure is the median of the next ``--steps``. Run it on an idle machine. QLoRA's first run
also saves the dequantized base as a Hugging Face folder (its peak memory then includes that
bf16 load); run it twice, or after a QLoRA fine-tune of the same base, for the training peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hearth.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--methods", default="lora,qlora", help="comma-separated")
    parser.add_argument("--child", choices=("lora", "qlora"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.child, args.steps, args.rank, args.seq, args.batch)))
        return
    for method in args.methods.split(","):
        command = [sys.executable, __file__, "--child", method]
        command += ["--steps", str(args.steps), "--rank", str(args.rank)]
        command += ["--seq", str(args.seq), "--batch", str(args.batch)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        print(result.stdout.strip().splitlines()[-1])


def _measure(method: str, steps: int, rank: int, seq: int, batch: int) -> dict[str, object]:
    import torch

    from hearth.finetune.base import load_base
    from hearth.finetune.data import TokenizedExample
    from hearth.finetune.options import TrainOptions
    from hearth.finetune.train import Trainer, add_lora, resolve_dtype
    from hearth.store import Store

    options = TrainOptions(
        method=method, rank=rank, batch_size=batch, max_steps=steps + 1, dropout=0.0, lr=1e-4
    )
    store = Store(get_settings())
    model = store.ensure("gemma3:270m")
    dtype = resolve_dtype(options)
    with tempfile.TemporaryDirectory() as work:
        cache = get_settings().home / "finetune" / "hf"
        loaded = load_base(model, Path(work), dtype=dtype, method=method, cache_dir=cache)
        peft_model = add_lora(loaded.model, options)
        generator = torch.Generator().manual_seed(0)
        vocab = int(loaded.model.config.vocab_size)
        examples = []
        for line in range(batch * 4):
            ids = torch.randint(10, vocab, (seq,), generator=generator).tolist()
            examples.append(TokenizedExample(line, ids, ids))
        trainer = Trainer(peft_model, examples, options, Path(work) / "ckpt", 0)
        times: list[float] = []
        trainer.run(lambda: False, lambda report: times.append(report.step_seconds))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "dtype": "bf16 compute, NF4 base" if method == "qlora" else dtype,
        "rank": rank,
        "seq": seq,
        "batch": batch,
        "seconds_per_step": round(statistics.median(times[1:]), 3),
        "peak_rss_gib": round(peak_kib / 1024 / 1024, 2),
        "threads": torch.get_num_threads(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }


if __name__ == "__main__":
    main()
