"""Contact and task ids: unique, and made in time order, so new rows append to the primary key."""

from __future__ import annotations

import re
import time

from outreach.state.ledger import new_id


def test_ids_are_32_hex_digits_unique_and_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(5):
        made.extend(new_id() for _ in range(200))
        time.sleep(0.002)  # the next millisecond
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)
    firsts = made[::200]
    assert firsts == sorted(firsts)
