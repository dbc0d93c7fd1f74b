"""Pausing the cyclic collector around bulk work: what the block keeps is not walked again by the
next young collection, and a cycle it made is still freed."""

from __future__ import annotations

import gc
import weakref

from outreach.memory import PROMOTE_FROM, collector_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_what_a_large_paused_block_keeps_joins_the_oldest_generation() -> None:
    with collector_paused():
        kept = [Node() for _ in range(PROMOTE_FROM)]
    assert gc.isenabled()
    assert all(node in gc.get_objects(generation=2) for node in kept[:5])
    assert not any(node is kept[0] for node in gc.get_objects(generation=0))


def test_what_a_small_paused_block_keeps_stays_young() -> None:
    with collector_paused():
        kept = [Node() for _ in range(100)]
    assert not any(node is kept[0] for node in gc.get_objects(generation=2))


def test_a_cycle_made_while_paused_is_still_freed() -> None:
    with collector_paused():
        filler = [Node() for _ in range(PROMOTE_FROM)]  # large enough to be promoted
        a, b = Node(), Node()
        a.other, b.other = b, a
        watched = weakref.ref(a)
        del a, b, filler
    assert watched() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert watched() is None


def test_a_nested_pause_leaves_the_collector_as_the_outer_one_found_it() -> None:
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
