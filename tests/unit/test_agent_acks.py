"""The ordered finalizer never moves a checkpoint past a range that was not acknowledged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.acks import OrderedFinalizer


def test_checkpoint_waits_for_the_earliest_range() -> None:
    finalizer = OrderedFinalizer(100)
    first = finalizer.register(100, 150)
    second = finalizer.register(150, 400)
    third = finalizer.register(400, 420)
    assert not finalizer.acknowledge(third)
    assert not finalizer.acknowledge(second)
    assert finalizer.checkpoint == 100  # the first batch is still being retried
    assert finalizer.acknowledge(first)
    assert finalizer.checkpoint == 420


def test_ranges_must_be_contiguous() -> None:
    finalizer = OrderedFinalizer(0)
    finalizer.register(0, 10)
    with pytest.raises(ValueError, match="does not continue at 10"):
        finalizer.register(11, 20)
    with pytest.raises(ValueError, match="ends before it starts"):
        finalizer.register(10, 5)


def test_empty_ranges_are_allowed() -> None:
    finalizer = OrderedFinalizer(5)
    ticket = finalizer.register(5, 5)
    assert finalizer.acknowledge(ticket)
    assert finalizer.checkpoint == 5


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60),
    data=st.data(),
)
def test_checkpoint_is_the_end_of_the_acknowledged_prefix_under_any_ack_order(
    sizes: list[int], data: st.DataObject
) -> None:
    start = data.draw(st.integers(min_value=0, max_value=10**9))
    finalizer = OrderedFinalizer(start)
    tickets = []
    offset = start
    for size in sizes:
        tickets.append(finalizer.register(offset, offset + size))
        offset += size
    order = data.draw(st.permutations(range(len(tickets))))
    acknowledged: set[int] = set()
    previous = start
    for index in order:
        finalizer.acknowledge(tickets[index])
        acknowledged.add(index)
        prefix = 0
        while prefix in acknowledged:
            prefix += 1
        expected = tickets[prefix - 1].end if prefix else start
        assert finalizer.checkpoint == expected
        assert finalizer.checkpoint >= previous  # it never moves backwards
        previous = finalizer.checkpoint
        # The gap-freedom property itself: every byte before the checkpoint was acknowledged.
        for position, ticket in enumerate(tickets):
            if ticket.end <= finalizer.checkpoint and ticket.start < ticket.end:
                assert position in acknowledged
    assert finalizer.checkpoint == offset
    assert finalizer.registered_end == finalizer.checkpoint
