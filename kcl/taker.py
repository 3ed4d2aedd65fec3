"""Which leases this worker should take or steal: pure functions of a lease-table read.

Balancing differs from the KCL 2.x taker, which steals one lease per run from the single most-loaded
worker (a new worker among 32 leases needs many runs).  Here every worker computes the same balanced
assignment from what it sees — ``ceil(leases / workers)`` for the workers holding the most, one
fewer for the rest — and acts on its own part of it: it takes its share of the available leases and
steals what it is short from every worker above its goal, in one run.  When workers see the same
table the shares do not overlap; when they do not (a worker that holds nothing is invisible to the
others), the conditional writes let one worker win each lease and the next run corrects the rest.
A lease that changed owner less than one taker interval ago is not stolen again, so that no lease
moves twice in one cycle while views settle.

Which leases are expired is decided by :mod:`kcl.expiry`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from kcl.leases import Lease


@dataclass(frozen=True)
class TakePlan:
    """What one taker run decided."""

    #: Available leases (unowned, expired, or handed over to us) to take now.
    take: list[Lease] = field(default_factory=list)
    #: Leases held by over-loaded workers to ask for (graceful handoff) or take.
    steal: list[Lease] = field(default_factory=list)
    total: int = 0
    workers: int = 0
    goal: int = 0
    held: int = 0
    expired: int = 0


def balanced_goals(counts: dict[str, int], total: int, max_per_worker: int) -> dict[str, int]:
    """Each worker's share: ``total // workers``, plus one for the ``total % workers`` busiest workers.

    Ties are broken by worker id so that every worker computes the same result.
    """
    workers = sorted(counts, key=lambda worker: (-counts[worker], worker))
    base, extra = divmod(total, len(workers))
    return {worker: min(max_per_worker, base + (1 if rank < extra else 0)) for rank, worker in enumerate(workers)}


def plan(
    leases: Sequence[Lease],
    me: str,
    *,
    held: set[str],
    expired: set[str],
    balance: bool,
    moved_recently: set[str] | frozenset[str] = frozenset(),
    max_acquire: int | None = None,
    max_leases_for_worker: int = 2**31 - 1,
    max_steal: int | None = None,
    rng: random.Random | None = None,
) -> TakePlan:
    """This worker's share of a balanced assignment of ``leases``.

    ``held``: lease keys this worker holds now.  ``expired``: keys whose counters have been static for
    the failover time.  ``balance``: whether this run may steal; available leases are taken on every
    run.  ``moved_recently``: keys not to steal (they changed owner within the last taker interval).
    ``max_acquire``: at most this many takes and steals together.  Leases at SHARD_END are finished
    work and take no part.
    """
    rng = rng or random.Random()
    active = [lease for lease in leases if not lease.is_shard_end]
    available: list[Lease] = []
    counts: dict[str, int] = {me: 0}
    by_owner: dict[str, list[Lease]] = {}
    for lease in active:
        key, owner = lease.lease_key, lease.lease_owner
        if key in held or (owner == me and lease.checkpoint_owner is not None and key not in expired):
            counts[me] += 1  # held, or being handed over to this worker
        elif owner is None or key in expired or owner == me:
            # Ours without holding it (handed over to us, or a previous run of this worker id): take it.
            available.append(lease)
        else:
            counts[owner] = counts.get(owner, 0) + 1
            if lease.checkpoint_owner is None and key not in moved_recently:
                by_owner.setdefault(owner, []).append(lease)
    goals = balanced_goals(counts, len(active), max_leases_for_worker)
    deficits = {worker: goals[worker] - count for worker, count in counts.items() if goals[worker] > count}
    result = TakePlan(total=len(active), workers=len(counts), goal=goals[me], held=counts[me],
                      expired=sum(1 for lease in active if lease.lease_key in expired))
    if me not in deficits:
        return result

    mine_first = sorted((lease for lease in available if lease.lease_owner == me), key=lambda lease: lease.lease_key)
    others = sorted((lease for lease in available if lease.lease_owner != me), key=lambda lease: lease.lease_key)
    take = mine_first[:deficits[me]]
    # Acquiring one lease at a time (a worker making itself visible, or waiting for the group to settle):
    # its view is the least trustworthy, so it picks at random rather than the first of a slice that
    # other workers, seeing more, may be dealing to themselves.
    one_at_a_time = max_acquire == 1 or (max_steal is not None and max_steal <= 1)
    share = _my_share(others, deficits, me, skip=len(take), rng=rng, shuffle=max_acquire == 1)
    take += share
    still_needed = deficits[me] - len(take)
    if max_acquire is not None:
        take = take[:max_acquire]
        still_needed = min(still_needed, max_acquire - len(take))
    result.take.extend(take)
    if not balance or still_needed <= 0:
        return result

    # Steal: walk thieves (still short once the available leases are dealt) and donors (above their
    # goal) in a fixed order, pairing need with surplus; keep the pairs that name this worker as thief.
    shortfalls = _shortfalls_after_available(deficits, len(others), me)
    surplus = {worker: counts[worker] - goals[worker] for worker in sorted(counts)
               if counts[worker] > goals[worker] and worker != me}
    # Alone among the short workers I can see, a random pick keeps invisible thieves (new workers that
    # hold nothing yet) from all choosing the same leases; otherwise disjoint slices in thief order.
    alone = set(shortfalls) == {me} or one_at_a_time
    steal: list[Lease] = []
    donor_offsets: dict[str, int] = {}
    for thief in sorted(shortfalls):
        need = shortfalls[thief]
        for donor in sorted(surplus, key=lambda worker: (-surplus[worker], worker)):
            if need == 0:
                break
            give = min(need, surplus[donor])
            if give == 0:
                continue
            offset = donor_offsets.get(donor, 0)
            if thief == me:
                candidates = sorted(by_owner.get(donor, []), key=lambda lease: lease.lease_key)
                steal.extend(rng.sample(candidates, min(give, len(candidates))) if alone
                             else candidates[offset:offset + give])
            donor_offsets[donor] = offset + give
            surplus[donor] -= give
            need -= give
    if max_steal is not None:
        steal = steal[:max_steal]
    result.steal.extend(steal[:still_needed])
    return result


def _my_share(
    available: list[Lease], deficits: dict[str, int], me: str, *, skip: int, rng: random.Random,
    shuffle: bool = False,
) -> list[Lease]:
    """My slice of the available leases when they are dealt to short workers in id order.

    When no other worker is short, nobody competes for them as far as this worker can tell, and the
    leases are taken in random order: workers that cannot see each other yet (they hold nothing)
    then tend to pick different leases rather than race for the same ones.
    """
    need = deficits[me] - skip
    if need <= 0 or not available:
        return []
    if len(deficits) == 1 or shuffle:
        shuffled = list(available)
        rng.shuffle(shuffled)
        return shuffled[:need]
    start = 0
    for worker in sorted(deficits):
        if worker == me:
            return available[start:start + need]
        start += deficits[worker]
    return []


def _shortfalls_after_available(deficits: dict[str, int], available: int, me: str) -> dict[str, int]:
    """What each short worker still lacks once the available leases are dealt out in id order."""
    shortfalls = {}
    left = available
    for worker in sorted(deficits):
        got = min(left, deficits[worker])
        left -= got
        if deficits[worker] - got > 0:
            shortfalls[worker] = deficits[worker] - got
    return shortfalls
