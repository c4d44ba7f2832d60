from hearth.engine.request import Request, RequestStatus
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig


def make_request(i: int, n: int) -> Request:
    return Request(prompt_tokens=[i] * n, params=SamplingParams(temperature=0))


def run_step(scheduler: Scheduler, token: int = 7) -> list[Request]:
    output = scheduler.schedule()
    sampled = {c.request.request_id: token for c in output.chunks if c.sample}
    return scheduler.update(output, sampled)


def test_prompt_longer_than_the_budget_is_chunked() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=2, token_budget=4, max_context=64))
    request = make_request(1, 10)
    scheduler.add_request(request)
    sizes = []
    for _ in range(3):
        output = scheduler.schedule()
        sizes.append([(len(c.tokens), c.start_pos, c.sample) for c in output.chunks])
        scheduler.update(output, {request.request_id: 9} if output.chunks[-1].sample else {})
    assert sizes == [[(4, 0, False)], [(4, 4, False)], [(2, 8, True)]]
    assert request.output_tokens == [9]
    assert request.num_computed_tokens == 10


def test_running_requests_decode_one_token_each_and_new_ones_fill_the_rest() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=4, token_budget=8, max_context=64))
    first = make_request(1, 3)
    scheduler.add_request(first)
    run_step(scheduler)
    second = make_request(2, 20)
    scheduler.add_request(second)
    output = scheduler.schedule()
    assert [(c.request, len(c.tokens), c.sample) for c in output.chunks] == [
        (first, 1, True),
        (second, 7, False),
    ]
    assert output.chunks[0].tokens == [7]  # the token sampled last step


def test_admission_is_limited_by_free_sequence_ids() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=2, token_budget=100, max_context=64))
    requests = [make_request(i, 2) for i in range(3)]
    for request in requests:
        scheduler.add_request(request)
    run_step(scheduler)
    assert [r.status for r in requests] == [
        RequestStatus.RUNNING,
        RequestStatus.RUNNING,
        RequestStatus.WAITING,
    ]
    assert {requests[0].seq_id, requests[1].seq_id} == {0, 1}


def test_finished_sequence_is_reused_by_the_next_request() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=1, token_budget=100, max_context=64))
    first, second = make_request(1, 2), make_request(2, 2)
    scheduler.add_request(first)
    scheduler.add_request(second)
    run_step(scheduler)
    seq = first.seq_id
    assert second.seq_id is None  # no free sequence for it yet
    scheduler.finish(first, RequestStatus.FINISHED_STOPPED)
    assert first.seq_id is None
    output = scheduler.schedule()
    assert [c.request for c in output.chunks] == [second]
    assert second.seq_id == seq


def test_finishing_a_waiting_request_drops_it() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=1, token_budget=100, max_context=64))
    request = make_request(1, 2)
    scheduler.add_request(request)
    scheduler.finish(request, RequestStatus.FINISHED_ABORTED)
    assert not scheduler.has_work
    assert request.status.finish_reason == "abort"


def test_status_order_marks_finished_states() -> None:
    assert not RequestStatus.PREEMPTED.finished
    assert all(s.finished for s in RequestStatus if s > RequestStatus.PREEMPTED)
    assert RequestStatus.FINISHED_LENGTH.finish_reason == "length"


def test_tokens_between_spans_prompt_and_output() -> None:
    request = make_request(1, 3)
    request.output_tokens.extend([7, 8])
    assert request.all_tokens == [1, 1, 1, 7, 8]
    for start in range(6):
        for end in range(start, 6):
            assert request.tokens_between(start, end) == request.all_tokens[start:end]


def finish_and_free(scheduler: Scheduler, request: Request) -> list[int]:
    return scheduler.finish(request, RequestStatus.FINISHED_STOPPED)


def test_newest_request_is_preempted_when_cells_run_out_and_recomputed_later() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=2, token_budget=64, max_context=32, kv_cells=12))
    old, new = make_request(1, 4), make_request(2, 4)
    scheduler.add_request(old)
    scheduler.add_request(new)
    run_step(scheduler)  # both prompts: 8 cells
    for _ in range(2):
        run_step(scheduler)  # 2 decode tokens each: 12 cells in use
    new_seq = new.seq_id
    output = scheduler.schedule()  # the next decode needs 2 more cells: the newest must go
    assert [c.request for c in output.chunks] == [old]
    assert new.status == RequestStatus.PREEMPTED
    assert output.frees == [new_seq]
    assert list(scheduler.waiting) == [new]
    assert new.num_computed_tokens == 0
    assert new.output_tokens == [7, 7, 7]  # kept: recomputed, not resampled
    assert scheduler.preemptions == 1
    scheduler.update(output, {old.request_id: 7})
    finish_and_free(scheduler, old)
    output = scheduler.schedule()
    assert [(c.request, len(c.tokens), c.start_pos) for c in output.chunks] == [(new, 7, 0)]


def test_finished_prefix_is_cached_and_copied_into_a_new_request() -> None:
    config = SchedulerConfig(max_seqs=1, token_budget=64, max_context=128, cache_seqs=1)
    scheduler = Scheduler(config)
    first = Request(prompt_tokens=list(range(40)), params=SamplingParams(temperature=0))
    scheduler.add_request(first)
    run_step(scheduler)
    assert finish_and_free(scheduler, first) == []  # kept by the cache, not freed
    second = Request(prompt_tokens=[*range(40), 99, 98], params=SamplingParams(temperature=0))
    scheduler.add_request(second)
    output = scheduler.schedule()
    assert len(output.copies) == 1
    copy = output.copies[0]
    assert (copy.dst, copy.length) == (second.seq_id, 40)
    assert second.cached_tokens == 40
    assert output.chunks[0].start_pos == 40
    assert output.chunks[0].tokens == [99, 98]


def test_prefix_cache_never_crosses_tenants() -> None:
    config = SchedulerConfig(max_seqs=1, token_budget=64, max_context=128, cache_seqs=1)
    scheduler = Scheduler(config)
    first = Request(list(range(40)), SamplingParams(temperature=0), cache_key="tenant-a")
    scheduler.add_request(first)
    run_step(scheduler)
    finish_and_free(scheduler, first)
    other = Request(list(range(40)), SamplingParams(temperature=0), cache_key="tenant-b")
    scheduler.add_request(other)
    output = scheduler.schedule()
    assert output.copies == []
    assert other.cached_tokens == 0


def test_cached_prefix_is_evicted_when_a_live_request_needs_its_sequence() -> None:
    config = SchedulerConfig(max_seqs=1, token_budget=64, max_context=64, cache_seqs=1, kv_cells=64)
    scheduler = Scheduler(config)
    first = Request(list(range(40)), SamplingParams(temperature=0))
    scheduler.add_request(first)
    run_step(scheduler)
    finish_and_free(scheduler, first)
    unrelated = Request([5] * 40, SamplingParams(temperature=0))
    scheduler.add_request(unrelated)
    output = scheduler.schedule()  # 40 cached + 41 needed > 64 cells: the cache gives way
    assert len(output.frees) == 1
    assert [c.request for c in output.chunks] == [unrelated]
    assert len(scheduler.cache) == 0


def test_siblings_of_an_n_request_copy_the_first_ones_prompt() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=3, token_budget=64, max_context=64))
    leader = make_request(3, 10)
    siblings = [Request([3] * 10, SamplingParams(temperature=0), follows=leader) for _ in range(2)]
    for request in (leader, *siblings):
        scheduler.add_request(request)
    first = scheduler.schedule()
    assert [c.request for c in first.chunks] == [leader]  # siblings wait for the prompt
    scheduler.update(first, {leader.request_id: 7})
    second = scheduler.schedule()
    assert [(c.request, c.tokens) for c in second.chunks] == [
        (leader, [7]),
        (siblings[0], [3]),  # only the last prompt token: its logits give its own first token
        (siblings[1], [3]),
    ]
    assert [(c.src, c.length) for c in second.copies] == [(leader.seq_id, 9)] * 2
