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
