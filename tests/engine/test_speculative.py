"""Speculative decoding, pure logic: drafting, verification, back-off, scheduling of drafts."""

from __future__ import annotations

import random

import pytest

from hearth.engine.request import Request
from hearth.engine.runner import check_same_vocabulary
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig
from hearth.engine.speculative import (
    NgramDrafter,
    PromptLookup,
    SpeculationGate,
    SpeculativeConfig,
    verify,
)
from hearth.errors import ModelLoadError, ValidationError


def test_verify_keeps_the_agreeing_prefix_and_the_targets_own_next_token() -> None:
    target = [5, 6, 7, 8, 9, 10]
    assert verify([5, 6, 7], target.__getitem__) == [5, 6, 7, 8]  # all accepted + bonus
    assert verify([5, 0, 7], target.__getitem__) == [5, 6]  # rejected at 1: the target's 6
    assert verify([0, 6], target.__getitem__) == [5]
    assert verify([], target.__getitem__) == [5]


def test_verify_draws_exactly_once_per_emitted_token() -> None:
    draws: list[int] = []

    def sample(i: int) -> int:
        draws.append(i)
        return 1

    assert verify([1, 1, 2, 1], sample) == [1, 1, 1]
    assert draws == [0, 1, 2]  # a seeded sampler advances as decoding one by one would


def test_prompt_lookup_follows_the_latest_occurrence_of_the_longest_suffix() -> None:
    lookup = PromptLookup(ngram_max=3, ngram_min=1)
    tokens = [1, 2, 3, 4, 5, 9, 2, 3, 4, 6, 7, 1, 2, 3]
    # "1 2 3" occurred at the start and was followed by 4 5 9 ...
    assert lookup.draft(tokens, 4) == [4, 5, 9, 2]
    tokens += [4]  # now "2 3 4" last occurred followed by 6 7
    assert lookup.draft(tokens, 3) == [6, 7, 1]


def test_prompt_lookup_falls_back_to_shorter_ngrams_and_gives_nothing_without_a_match() -> None:
    lookup = PromptLookup(ngram_max=3, ngram_min=1)
    assert lookup.draft([1, 2, 3, 8, 3], 2) == [8, 3]  # only "3" matches
    assert PromptLookup(3, 2).draft([1, 2, 3, 8, 3], 2) == []  # no 2-gram matches
    assert PromptLookup().draft([1, 2, 3], 4) == []
    assert PromptLookup().draft([], 4) == []


def test_prompt_lookup_indexes_incrementally_like_from_scratch() -> None:
    rng = random.Random(3)
    tokens = [rng.randrange(6) for _ in range(40)]
    incremental = PromptLookup()
    for end in range(1, len(tokens) + 1):
        assert incremental.draft(tokens[:end], 5) == PromptLookup().draft(tokens[:end], 5)


def test_ngram_drafter_keeps_one_index_per_request() -> None:
    drafter = NgramDrafter(SpeculativeConfig())
    a = Request(prompt_tokens=[1, 2, 3, 1, 2], params=SamplingParams(temperature=0))
    b = Request(prompt_tokens=[7, 8, 9, 7, 8], params=SamplingParams(temperature=0))
    c = Request(prompt_tokens=[7, 8, 7], params=SamplingParams(temperature=0))
    drafts = drafter.propose([(a, 2), (b, 5), (c, 5)])
    # c's only match is one token long: too weak a signal to draft on (ngram_min 2)
    assert drafts == {a.request_id: [3, 1], b.request_id: [9, 7, 8], c.request_id: []}
    drafter.release(a)
    drafter.release(a)  # twice is harmless


def test_gate_backs_off_exponentially_so_failing_drafts_cost_under_5_percent() -> None:
    gate = SpeculationGate(SpeculativeConfig(max_backoff=64))
    attempts = 0
    for _ in range(2000):
        if gate.ready():
            attempts += 1
            gate.record(drafted=8, accepted=0)
    assert attempts / 2000 < 0.05
    assert gate.backoff == 64


def test_gate_stays_open_while_drafts_pay_and_recovers_after_a_bad_patch() -> None:
    gate = SpeculationGate(SpeculativeConfig(min_acceptance=0.25, window=4))
    for _ in range(20):
        assert gate.ready()
        gate.record(drafted=8, accepted=6)
    gate.record(drafted=8, accepted=0)  # one failure in a good window: still open
    assert gate.ready()
    for _ in range(3):
        gate.record(drafted=8, accepted=0)
    assert not gate.ready()  # the window's rate fell under 25 %
    gate.record(drafted=8, accepted=8)
    assert gate.backoff == 2  # a good window halves the back-off (it had doubled to 4)
    assert gate.accepted == 20 * 6 + 8


def test_speculative_config_and_params_are_validated() -> None:
    with pytest.raises(ValidationError, match="speculative"):
        SpeculativeConfig(method="medusa")
    with pytest.raises(ValidationError, match="draft_min"):
        SpeculativeConfig(draft_min=9, draft_max=8)
    with pytest.raises(ValidationError, match="speculative"):
        SamplingParams(speculative="eagle")
    with pytest.raises(ValidationError, match="draft_max"):
        SamplingParams(draft_max=0)
    params = SamplingParams().updated_from_text("speculative", "ngram")
    assert params.updated_from_text("draft_max", "4").draft_max == 4
    assert SamplingParams.from_mapping({"speculative": "off"}).speculative == "off"


def decoding(scheduler: Scheduler, *prompts: list[int]) -> list[Request]:
    """Requests whose prompts are computed and that sampled their first token (7)."""
    requests = [Request(prompt_tokens=p, params=SamplingParams(temperature=0)) for p in prompts]
    for request in requests:
        scheduler.add_request(request)
    output = scheduler.schedule()
    scheduler.update(output, {r.request_id: 7 for r in requests})
    return requests


def test_drafts_ride_on_the_decode_chunk_and_only_kept_cells_count() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=2, token_budget=64, max_context=64))
    (request,) = decoding(scheduler, [1, 2, 3])
    request.draft = [4, 5, 6]
    output = scheduler.schedule()
    (chunk,) = output.chunks
    assert (chunk.tokens, chunk.start_pos, chunk.draft, chunk.sample) == ([7, 4, 5, 6], 3, 3, True)
    assert request.draft == []  # consumed
    scheduler.update(output, {request.request_id: [4, 5, 9]})  # 2 accepted, then the target's 9
    assert request.output_tokens == [7, 4, 5, 9]
    assert request.num_computed_tokens == 6  # prompt, 7, 4, 5: the 9 is computed next step
    assert scheduler.used_cells == 6


def test_drafts_get_what_the_budget_leaves_after_every_request_has_its_token() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=3, token_budget=6, max_context=64))
    first, second = decoding(scheduler, [1, 2], [3, 4])
    first.draft, second.draft = [9] * 8, [8] * 8
    output = scheduler.schedule()
    assert [(len(c.tokens), c.draft) for c in output.chunks] == [(5, 4), (1, 0)]
    assert output.num_tokens == 6


def test_drafts_never_take_cells_that_are_not_free_or_pass_the_context() -> None:
    tight = Scheduler(SchedulerConfig(max_seqs=1, token_budget=64, max_context=64, kv_cells=6))
    (request,) = decoding(tight, [1, 2, 3])
    request.draft = [4, 5, 6, 7, 8]
    (chunk,) = tight.schedule().chunks
    assert chunk.draft == 2  # 3 cells used, 1 for the token, 2 left for the draft
    assert tight.preemptions == 0
    short = Scheduler(SchedulerConfig(max_seqs=1, token_budget=64, max_context=8))
    (request,) = decoding(short, [1, 2, 3, 4, 5])
    request.draft = [4, 5, 6, 7, 8]
    (chunk,) = short.schedule().chunks
    assert chunk.draft == 1  # positions up to max_context - 2, as without speculation


def test_a_prompt_chunk_carries_no_draft() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=1, token_budget=64, max_context=64))
    request = Request(prompt_tokens=[1, 2, 3], params=SamplingParams(temperature=0))
    request.draft = [1, 2]
    scheduler.add_request(request)
    (chunk,) = scheduler.schedule().chunks
    assert chunk.draft == 0 and chunk.tokens == [1, 2, 3]


class _Vocab:
    def __init__(self, texts: list[str], bos: int = 1, eos: int = 2) -> None:
        self.texts, self.n_vocab, self.bos, self.eos = texts, len(texts), bos, eos

    def token_text(self, token: int) -> str:
        return self.texts[token]


def test_a_draft_model_must_share_the_vocabulary() -> None:
    texts = [f"piece{i}" for i in range(300)]
    check_same_vocabulary(_Vocab(texts), _Vocab(list(texts)), "same")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="299 tokens, the model 300"):
        check_same_vocabulary(_Vocab(texts[:-1]), _Vocab(texts), "short")  # type: ignore[arg-type]
    other = list(texts)
    other[128] = "different"
    with pytest.raises(ModelLoadError, match="token 128"):
        check_same_vocabulary(_Vocab(other), _Vocab(texts), "other")  # type: ignore[arg-type]


def test_the_apis_and_modelfiles_choose_speculation() -> None:
    from hearth.modelfile.params import draft_model_name, normalise, parse_value, sampling_defaults
    from hearth.server.ollama.convert import sampling_params
    from hearth.server.ollama.schemas import Options
    from hearth.server.openai.convert import chat_params
    from hearth.server.openai.schemas import ChatCompletionRequest

    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "speculative": {"method": "ngram", "max_draft": 4},
        }
    )
    params = chat_params(body)
    assert (params.speculative, params.draft_max) == ("ngram", 4)
    assert params.explicit is not None and {"speculative", "draft_max"} <= params.explicit
    plain = chat_params(body.model_copy(update={"speculative": None}))
    assert plain.explicit is not None and "speculative" not in plain.explicit
    ollama = sampling_params(Options(speculative="off", draft_max=3), None)
    assert (ollama.speculative, ollama.draft_max) == ("off", 3)
    stored, _ = normalise({"speculative": parse_value("speculative", "draft:gemma3:270m")})
    assert draft_model_name(stored) == "gemma3:270m"
    assert sampling_defaults(stored) == {"speculative": "draft"}
    assert draft_model_name({"speculative": "ngram"}) is None
    assert parse_value("draft_max", "6") == 6
    with pytest.raises(ValidationError, match="speculative"):
        normalise({"speculative": "fast"})
    with pytest.raises(ValidationError, match="draft model"):
        draft_model_name({"speculative": "draft:"})


def test_prometheus_counts_drafted_and_accepted_tokens() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from hearth.engine.engine import EngineStats
    from hearth.server.metrics import _EngineCollector

    stats = EngineStats(1, 1, 0, 1, 10, 100, 0, 0, 0, 0, 0, 0, 0, 40, 30, 5)
    assert stats.acceptance_rate == 0.75

    class Manager:  # the two calls the collector makes
        def engine_stats(self) -> list[tuple[str, EngineStats]]:
            return [("m", stats)]

        def loaded(self) -> list[object]:
            return []

    registry = CollectorRegistry()
    registry.register(_EngineCollector(Manager()))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'hearth_speculative_draft_tokens_total{model="m"} 40.0' in text
    assert 'hearth_speculative_accepted_tokens_total{model="m"} 30.0' in text


def test_draft_length_shrinks_after_a_rejection_and_doubles_after_full_acceptance() -> None:
    gate = SpeculationGate(SpeculativeConfig(draft_max=8, min_acceptance=0.0))
    assert gate.length == 8
    gate.record(drafted=8, accepted=2)
    assert gate.length == 3
    gate.record(drafted=3, accepted=3)
    assert gate.length == 6
    gate.record(drafted=6, accepted=6)
    assert gate.length == 8
    gate.record(drafted=8, accepted=0)
    assert gate.length == 1
