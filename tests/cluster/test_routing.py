"""The routers: prefix affinity, consistent hashing, bounded load, sticky adapters."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.cluster.routing import (
    HashRing,
    LeastLoadedRouter,
    PrefixRouter,
    RandomRouter,
    ReplicaLoad,
)
from hearth.errors import EngineOverloadedError, ValidationError

SYSTEM = list(range(1000, 1100))  # a 100-token system prompt


def idle(count: int, capacity: int = 8) -> list[ReplicaLoad]:
    return [ReplicaLoad(f"r{i}", 0, capacity) for i in range(count)]


def with_load(replicas: list[ReplicaLoad], replica_id: str, ongoing: int) -> list[ReplicaLoad]:
    return [
        ReplicaLoad(r.id, ongoing, r.capacity, r.adapters) if r.id == replica_id else r
        for r in replicas
    ]


def test_prompts_that_share_the_first_blocks_go_to_the_same_replica() -> None:
    router = PrefixRouter()
    replicas = idle(8)
    chosen = {router.choose([*SYSTEM, *range(i * 7, i * 7 + 30)], replicas) for i in range(50)}
    assert len(chosen) == 1


def test_only_the_first_blocks_form_the_key() -> None:
    router = PrefixRouter(block_size=16, blocks=2)
    head = list(range(32))
    assert router.key([*head, 1, 2]) == router.key([*head, 3, 4, 5])
    assert router.key(head) != router.key([*head[:-1], 99])  # inside the key: it counts


def test_text_prompts_are_keyed_by_their_first_characters() -> None:
    router = PrefixRouter(text_chars=40)
    system = "You are a support assistant for Acme. Answer briefly. "
    replicas = idle(8)
    chosen = {router.choose(system + f"question {i}", replicas) for i in range(30)}
    assert len(chosen) == 1
    assert router.key("a" * 40 + "x") == router.key("a" * 40 + "y")


def test_distinct_prefixes_spread_evenly() -> None:
    router = PrefixRouter()
    replicas = idle(8)
    rng = random.Random(1)
    counts = Counter(
        router.choose([rng.randrange(50_000) for _ in range(64)], replicas) for _ in range(8000)
    )
    assert set(counts) == {r.id for r in replicas}
    assert max(counts.values()) < 1.3 * 1000 and min(counts.values()) > 0.7 * 1000


def test_adding_a_replica_moves_about_one_nth_of_the_keys_all_to_it() -> None:
    keys = [random.Random(i).getrandbits(64) for i in range(5000)]
    before = HashRing(tuple(f"r{i}" for i in range(8)), 64)
    after = HashRing(tuple(f"r{i}" for i in range(9)), 64)
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    assert 0.06 < len(moved) / len(keys) < 0.17  # about 1/9
    assert {after.owner(k) for k in moved} == {"r8"}


def test_removing_a_replica_moves_only_its_keys() -> None:
    keys = [random.Random(i).getrandbits(64) for i in range(5000)]
    before = HashRing(tuple(f"r{i}" for i in range(8)), 64)
    after = HashRing(tuple(f"r{i}" for i in range(8) if i != 3), 64)
    for key in keys:
        if before.owner(key) != "r3":
            assert after.owner(key) == before.owner(key)


def test_a_saturated_replica_spills_to_the_next_one_on_the_ring() -> None:
    router = PrefixRouter(load_factor=None)
    replicas = idle(6, capacity=4)
    prompt = [*SYSTEM, 1, 2, 3]
    home = router.choose(prompt, replicas)
    full = with_load(replicas, home, 4)
    spill = router.choose(prompt, full)
    assert spill != home
    assert {router.choose([*SYSTEM, i], full) for i in range(20)} == {spill}  # always the same
    assert router.choose(prompt, with_load(replicas, home, 3)) == home  # below capacity: stays


def test_bounded_load_keeps_a_hot_prefix_from_piling_up() -> None:
    router = PrefixRouter(load_factor=1.5, busy_fraction=0.25)
    prompt = [*SYSTEM, 7]
    home = router.choose(prompt, idle(4, capacity=16))

    def loads(home_load: int, other_load: int) -> list[ReplicaLoad]:
        return [ReplicaLoad(r.id, home_load if r.id == home else other_load, 16) for r in idle(4)]

    # 7 in flight with this one: a fair-share bound of ceil(1.5 * 7 / 4) = 3, home holds 6.
    assert router.choose(prompt, loads(6, 0)) != home
    assert router.choose(prompt, loads(6, 4)) == home  # 19 in flight: the bound is 8
    assert router.choose(prompt, loads(3, 0)) == home  # under a quarter full: no bound


def test_when_every_replica_is_saturated_the_least_loaded_takes_it() -> None:
    router = PrefixRouter()
    replicas = [ReplicaLoad("a", 9, 8), ReplicaLoad("b", 8, 8), ReplicaLoad("c", 10, 8)]
    assert router.choose(SYSTEM, replicas) == "b"


def test_adapter_requests_go_to_replicas_that_have_it() -> None:
    router = PrefixRouter()
    replicas = [
        ReplicaLoad("a", 0, 8),
        ReplicaLoad("b", 5, 8, frozenset({"support"})),
        ReplicaLoad("c", 0, 8),
        ReplicaLoad("d", 6, 8, frozenset({"support", "legal"})),
    ]
    chosen = {router.choose([*SYSTEM, i], replicas, adapter="support") for i in range(40)}
    assert chosen <= {"b", "d"}
    one_prefix = {router.choose(SYSTEM, replicas, adapter="support") for _ in range(5)}
    assert len(one_prefix) == 1  # among the holders, still by prefix
    assert router.choose(SYSTEM, replicas, adapter="legal") == "d"


def test_an_adapter_nobody_has_with_room_goes_to_the_least_loaded() -> None:
    router = PrefixRouter()
    replicas = [
        ReplicaLoad("a", 3, 8),
        ReplicaLoad("b", 8, 8, frozenset({"support"})),  # has it, but saturated
        ReplicaLoad("c", 1, 8),
    ]
    assert router.choose(SYSTEM, replicas, adapter="support") == "c"
    assert router.choose(SYSTEM, replicas, adapter="new-one") == "c"


def test_least_loaded_router_compares_utilization() -> None:
    router = LeastLoadedRouter(seed=0)
    replicas = [ReplicaLoad("small", 2, 4), ReplicaLoad("big", 3, 16), ReplicaLoad("c", 4, 8)]
    assert router.choose(SYSTEM, replicas) == "big"
    ties = {router.choose(SYSTEM, idle(4)) for _ in range(100)}
    assert len(ties) == 4  # ties broken at random, not always the first


def test_random_router_is_seeded_and_uniform() -> None:
    replicas = idle(4)
    first = [RandomRouter(seed=3).choose(SYSTEM, replicas) for _ in range(3)]
    assert len(set(first)) == 1
    router = RandomRouter(seed=3)
    counts = Counter(router.choose(SYSTEM, replicas) for _ in range(4000))
    assert min(counts.values()) > 850


@pytest.mark.parametrize("router", [PrefixRouter(), LeastLoadedRouter(), RandomRouter()])
def test_no_replica_is_an_overload(router: PrefixRouter) -> None:
    with pytest.raises(EngineOverloadedError, match="no replica"):
        router.choose(SYSTEM, [])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="capacity"):
        ReplicaLoad("a", 0, 0)
    with pytest.raises(ValidationError, match="blocks"):
        PrefixRouter(blocks=0)
    with pytest.raises(ValidationError, match="load_factor"):
        PrefixRouter(load_factor=0.5)


replica_sets = st.lists(
    st.tuples(st.integers(0, 12), st.integers(1, 8), st.booleans()), min_size=1, max_size=10
)


@settings(max_examples=200, deadline=None)
@given(
    loads=replica_sets,
    prompt=st.one_of(st.lists(st.integers(0, 300), max_size=120), st.text(max_size=300)),
    adapter=st.sampled_from([None, "x"]),
)
def test_the_choice_is_a_live_replica_never_a_saturated_one_with_room_elsewhere(
    loads: list[tuple[int, int, bool]], prompt: list[int] | str, adapter: str | None
) -> None:
    replicas = [
        ReplicaLoad(f"r{i}", ongoing, capacity, frozenset({"x"}) if has else frozenset())
        for i, (ongoing, capacity, has) in enumerate(loads)
    ]
    chosen = PrefixRouter(seed=0).choose(prompt, replicas, adapter=adapter)
    by_id = {r.id: r for r in replicas}
    assert chosen in by_id
    if by_id[chosen].saturated:
        assert all(r.saturated for r in replicas)
