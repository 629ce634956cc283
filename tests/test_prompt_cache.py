"""Which prompt prefixes the one-slot engine keeps, and which one serves a prompt (no model)."""

from __future__ import annotations

from lift_sys.generation.engines.prompt_cache import PromptCache


def test_the_longest_shared_prefix_serves_and_prefixes_of_a_newer_prompt_go():
    cache = PromptCache(max_bytes=1000, min_tokens=2)
    system = list(range(40))
    cache.put(system, b"s", 100)
    cache.put(system + [7, 8, 9], b"ir", 100)  # covers the bare system prompt: that one goes
    cache.put([1000, 1, 2, 3], b"code", 100)
    assert len(cache) == 2 and cache.bytes == 200
    snap, shared = cache.best(system + [7, 8, 5, 5])
    assert snap.data == b"ir" and shared == 42
    snap, shared = cache.best([1000, 1, 2, 9])
    assert snap.data == b"code" and shared == 3
    assert cache.best([5000, 1]) == (None, 0)
    assert not cache.wants(system + [7]) and not cache.wants([1])  # covered; too short
    assert cache.wants(system + [7, 8, 9, 10])


def test_the_least_recently_used_snapshot_goes_first_when_over_budget():
    cache = PromptCache(max_bytes=250, min_tokens=1)
    cache.put([1, 1], "a", 100)
    cache.put([2, 2], "b", 100)
    snap, _ = cache.best([1, 1, 3])
    cache.used(snap, 2)  # "a" is now the most recent
    cache.put([3, 3], "c", 100)
    assert sorted(s.data for s in cache._entries.values()) == ["a", "c"] and cache.bytes == 200
    assert cache.stats()["hits"] == 1 and cache.stats()["restored_tokens"] == 2
    cache.put([4], "too big", 251)
    assert cache.best([4])[0] is None
    assert PromptCache(max_bytes=0).wants(list(range(100))) is False
