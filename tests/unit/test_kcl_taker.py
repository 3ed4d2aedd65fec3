"""The taker's balanced take/steal plan."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kcl.leases import Lease
from kcl.sequence import ESN_SHARD_END, ExtendedSequenceNumber
from kcl.taker import balanced_goals, plan


def lease(key: str, owner: str | None = None, counter: int = 1, **changes: object) -> Lease:
    return Lease(lease_key=key, lease_owner=owner, lease_counter=counter).with_(**changes)


def leases_of(distribution: dict[str | None, int]) -> list[Lease]:
    result = []
    index = 0
    for owner, count in distribution.items():
        for _ in range(count):
            result.append(lease(f"shardId-{index:012d}", owner))
            index += 1
    return result


# --- goals ----------------------------------------------------------------------------------------


def test_goals_are_ceil_for_the_busiest_and_floor_for_the_rest() -> None:
    goals = balanced_goals({"a": 5, "b": 3, "c": 0}, 8, 2**31)
    assert goals == {"a": 3, "b": 3, "c": 2}
    assert max(goals.values()) == -(-8 // 3)


def test_goals_break_ties_by_worker_id_so_every_worker_agrees() -> None:
    assert balanced_goals({"b": 2, "a": 2, "c": 2, "d": 0}, 7, 2**31) == {"a": 2, "b": 2, "c": 2, "d": 1}


def test_goals_respect_max_leases_for_worker() -> None:
    assert balanced_goals({"a": 0}, 10, 4) == {"a": 4}


# --- plan -----------------------------------------------------------------------------------------


def test_lone_worker_takes_every_available_lease() -> None:
    decided = plan(leases_of({None: 8}), "w1", held=set(), expired=set(), balance=True, rng=random.Random(1))
    assert len(decided.take) == 8
    assert decided.steal == []


def test_available_leases_are_dealt_to_short_workers_without_overlap() -> None:
    table = leases_of({"w1": 2, "w2": 2, "dead": 4})
    expired = {item.lease_key for item in table if item.lease_owner == "dead"}
    shares = {}
    for me in ("w1", "w2"):
        held = {item.lease_key for item in table if item.lease_owner == me}
        shares[me] = {item.lease_key for item in plan(table, me, held=held, expired=expired, balance=False).take}
    assert len(shares["w1"]) == len(shares["w2"]) == 2
    assert not shares["w1"] & shares["w2"]
    assert shares["w1"] | shares["w2"] == expired


def test_joining_worker_steals_from_every_over_target_worker_in_one_cycle() -> None:
    table = leases_of({"a": 3, "b": 3, "c": 2})
    decided = plan(table, "d", held=set(), expired=set(), balance=True)
    assert decided.goal == 2
    assert Counter(item.lease_owner for item in decided.steal) == {"a": 1, "b": 1}


def test_steals_only_on_balancing_cycles() -> None:
    decided = plan(leases_of({"a": 4, "b": 4}), "c", held=set(), expired=set(), balance=False)
    assert decided.steal == [] and decided.take == []


def test_balanced_table_is_left_alone() -> None:
    table = leases_of({"a": 3, "b": 3, "c": 2})
    for me in ("a", "b", "c"):
        held = {item.lease_key for item in table if item.lease_owner == me}
        decided = plan(table, me, held=held, expired=set(), balance=True)
        assert decided.take == [] and decided.steal == []


def test_leases_in_handoff_count_for_the_next_owner_and_are_not_stolen_again() -> None:
    table = leases_of({"a": 4, "b": 4})
    table[0] = table[0].with_(lease_owner="c", checkpoint_owner="a")
    decided = plan(table, "c", held=set(), expired=set(), balance=True)
    assert decided.held == 1
    assert table[0] not in decided.steal
    assert len(decided.steal) == decided.goal - 1


def test_handed_over_lease_is_taken_by_its_new_owner() -> None:
    table = leases_of({"a": 2, "b": 2})
    table[0] = table[0].with_(lease_owner="c")  # handoff completed: owner is c, checkpointOwner cleared
    decided = plan(table, "c", held=set(), expired=set(), balance=False)
    assert table[0] in decided.take


def test_finished_shards_take_no_part() -> None:
    table = [*leases_of({None: 2}), lease("shardId-000000000099", None, checkpoint=ESN_SHARD_END)]
    decided = plan(table, "w1", held=set(), expired=set(), balance=True)
    assert decided.total == 2
    assert all(not item.is_shard_end for item in decided.take)


def test_max_leases_to_steal_at_one_time_caps_steals() -> None:
    decided = plan(leases_of({"a": 8}), "b", held=set(), expired=set(), balance=True, max_steal=1)
    assert len(decided.steal) == 1


def test_expired_leases_are_taken_before_anything_is_stolen() -> None:
    table = leases_of({"a": 3, "dead": 3})
    expired = {item.lease_key for item in table if item.lease_owner == "dead"}
    decided = plan(table, "b", held=set(), expired=expired, balance=True)
    assert {item.lease_key for item in decided.take} <= expired
    assert decided.steal == []


# --- convergence: every worker planning on the same snapshot, conditional writes deciding races ---------


def simulate_round(table: dict[str, Lease], workers: list[str], rng: random.Random) -> None:
    """One taker cycle of every worker, on one snapshot; handoffs complete before the next cycle."""
    snapshot = list(table.values())
    intents = []
    for me in workers:
        held = {item.lease_key for item in snapshot if item.lease_owner == me}
        decided = plan(snapshot, me, held=held, expired=set(), balance=True, rng=rng)
        intents += [(me, item, "take") for item in decided.take] + [(me, item, "steal") for item in decided.steal]
    rng.shuffle(intents)
    for me, seen, _ in intents:
        current = table[seen.lease_key]
        if current.lease_counter == seen.lease_counter and current.lease_owner == seen.lease_owner:
            table[seen.lease_key] = current.with_(lease_owner=me, lease_counter=current.lease_counter + 1)


def balanced(table: dict[str, Lease], workers: list[str]) -> bool:
    counts = Counter(item.lease_owner for item in table.values())
    return set(counts) == set(workers) and max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("seed", range(20))
def test_one_joining_worker_is_balanced_after_one_cycle(seed: int) -> None:
    rng = random.Random(seed)
    table = {item.lease_key: item for item in leases_of({"a": 11, "b": 11, "c": 10})}
    workers = ["a", "b", "c", "d"]
    simulate_round(table, workers, rng)
    assert balanced(table, workers)


@pytest.mark.parametrize("seed", range(50))
def test_32_leases_from_one_to_four_workers_balance_within_two_cycles(seed: int) -> None:
    rng = random.Random(seed)
    table = {item.lease_key: item for item in leases_of({"a": 32})}
    workers = ["a", "b", "c", "d"]
    for _ in range(2):
        simulate_round(table, workers, rng)
    assert balanced(table, workers), Counter(item.lease_owner for item in table.values())


def test_simultaneous_start_on_an_empty_table_balances_within_three_cycles() -> None:
    # Workers that hold nothing cannot see each other, so in the worst case (all three acting on the same
    # snapshot) one may lose every race in the first cycle and only become visible in the second.
    for seed in range(200):
        rng = random.Random(seed)
        table = {item.lease_key: item for item in leases_of({None: 8})}
        workers = ["a", "b", "c"]
        for _ in range(3):
            simulate_round(table, workers, rng)
        assert balanced(table, workers), (seed, Counter(item.lease_owner for item in table.values()))


def test_checkpoint_positions_do_not_matter_to_balancing() -> None:
    table = [item.with_(checkpoint=ExtendedSequenceNumber("123", 4)) for item in leases_of({"a": 4})]
    assert len(plan(table, "b", held=set(), expired=set(), balance=True).steal) == 2


def test_leases_that_moved_within_the_last_cycle_are_not_stolen() -> None:
    table = leases_of({"a": 4})
    recent = {table[0].lease_key, table[1].lease_key}
    decided = plan(table, "b", held=set(), expired=set(), balance=True, moved_recently=recent)
    assert {item.lease_key for item in decided.steal} == {table[2].lease_key, table[3].lease_key}
    decided = plan(table, "b", held=set(), expired=set(), balance=True, moved_recently={t.lease_key for t in table})
    assert decided.steal == []


def test_max_acquire_caps_takes_and_steals_together() -> None:
    assert len(plan(leases_of({None: 8}), "w1", held=set(), expired=set(), balance=True, max_acquire=1).take) == 1
    decided = plan(leases_of({"a": 8}), "b", held=set(), expired=set(), balance=True, max_acquire=1)
    assert (len(decided.take), len(decided.steal)) == (0, 1)
    decided = plan(leases_of({None: 1, "a": 8}), "b", held=set(), expired=set(), balance=True, max_acquire=1)
    assert (len(decided.take), len(decided.steal)) == (1, 0)


def test_an_expired_handoff_to_me_is_taken() -> None:
    """The previous owner died while handing the lease over: once expired, the next owner takes it."""
    handed = lease("shardId-000000000000", "b", checkpoint_owner="a")
    assert plan([handed], "b", held=set(), expired=set(), balance=True).take == []
    assert plan([handed], "b", held=set(), expired={handed.lease_key}, balance=True).take == [handed]


def test_one_at_a_time_picks_at_random_so_that_unsettled_views_do_not_collide() -> None:
    """Two new workers that cannot see each other yet would otherwise both steal the first lease."""
    table = leases_of({"a": 30, "b": 1, "c": 1})
    picks = {plan(table, "d", held=set(), expired=set(), balance=True, max_acquire=1,
                  rng=random.Random(seed)).steal[0].lease_key for seed in range(20)}
    assert len(picks) > 5
    picks = {plan(leases_of({None: 30}), "d", held=set(), expired=set(), balance=True, max_acquire=1,
                  rng=random.Random(seed)).take[0].lease_key for seed in range(20)}
    assert len(picks) > 5
