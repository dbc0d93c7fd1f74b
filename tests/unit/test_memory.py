"""Pausing the cyclic collector around bulk work: what the block keeps is not walked again by the
next young collection, and a cycle it made is still freed."""

from __future__ import annotations

import gc
import weakref

from outreach.memory import collector_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_what_a_paused_block_keeps_joins_the_oldest_generation() -> None:
    with collector_paused():
        kept = [Node() for _ in range(1000)]
    assert gc.isenabled()
    assert all(node in gc.get_objects(generation=2) for node in kept[:5])
    assert not any(node is kept[0] for node in gc.get_objects(generation=0))


def test_a_cycle_made_while_paused_is_still_freed() -> None:
    with collector_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        watched = weakref.ref(a)
        del a, b
    assert watched() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert watched() is None


def test_a_nested_pause_leaves_the_collector_as_the_outer_one_found_it() -> None:
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
