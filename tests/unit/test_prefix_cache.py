from hearth.engine.prefix_cache import BLOCK_SIZE, PrefixCache, block_hashes


def test_block_hashes_chain_and_depend_on_the_tenant() -> None:
    tokens = list(range(3 * BLOCK_SIZE + 5))
    hashes = block_hashes("a", tokens)
    assert len(hashes) == 3  # only full blocks
    assert block_hashes("a", tokens[: 2 * BLOCK_SIZE]) == hashes[:2]
    assert block_hashes("b", tokens)[0] != hashes[0]
    changed = [*tokens[:BLOCK_SIZE], -1, *tokens[BLOCK_SIZE + 1 :]]
    assert block_hashes("a", changed)[0] == hashes[0]
    assert block_hashes("a", changed)[1:] != hashes[1:]  # a change poisons every later block


def test_match_picks_the_longest_common_prefix() -> None:
    cache = PrefixCache(capacity=4)
    cache.offer(0, "t", list(range(40)))
    cache.offer(1, "t", [*range(20), *range(100, 140)])
    match = cache.match("t", [*range(36), 7, 7])
    assert match is not None
    assert (match.entry.seq_id, match.length) == (0, 36)
    assert cache.match("t", [1000] * 40) is None
    assert cache.match("other", list(range(40))) is None


def test_short_or_duplicate_sequences_are_not_kept() -> None:
    cache = PrefixCache(capacity=4)
    assert cache.offer(0, "t", list(range(BLOCK_SIZE - 1))) == [0]  # shorter than a block
    assert cache.offer(1, "t", list(range(40))) == []
    assert cache.offer(2, "t", list(range(32))) == [2]  # entry 1 already holds all of it
    assert len(cache) == 1


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache = PrefixCache(capacity=2)
    cache.offer(0, "t", [0] * 32)
    cache.offer(1, "t", [1] * 32)
    cache.match("t", [0] * 32)  # entry 0 becomes the most recently used
    assert cache.offer(2, "t", [2] * 32) == [1]
    entry = cache.evict_lru()
    assert entry is not None and entry.seq_id == 0
    assert cache.cells == 32


def test_zero_capacity_keeps_nothing() -> None:
    cache = PrefixCache(capacity=0)
    assert cache.offer(3, "t", list(range(64))) == [3]
