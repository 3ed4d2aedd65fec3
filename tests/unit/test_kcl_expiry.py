"""Lease expiry by counter observation, and the early suspicion that schedules the read deciding it."""

from __future__ import annotations

from kcl.expiry import LeaseObservations
from kcl.leases import Lease
from kcl.sequence import ESN_SHARD_END

FAILOVER = 10.0
RENEWAL = FAILOVER / 3 - 0.025
CYCLE = 2 * (FAILOVER + 0.025)


def lease(key: str, owner: str | None = None, counter: int = 1, renewals: int | None = None,
          **changes: object) -> Lease:
    return Lease(lease_key=key, lease_owner=owner, lease_counter=counter, renewal_counter=renewals).with_(**changes)


def observations() -> LeaseObservations:
    return LeaseObservations(FAILOVER, RENEWAL)


def test_owned_lease_seen_first_counts_as_just_renewed() -> None:
    seen = observations()
    owned = lease("a", "w1", counter=5)
    seen.observe([owned], now=100.0, me="me")
    assert not seen.is_expired(owned, 100.0 + FAILOVER)
    seen.observe([owned], now=100.0 + FAILOVER + 0.001, me="me")
    assert seen.is_expired(owned, 100.0 + FAILOVER + 0.001)


def test_counter_change_restarts_the_clock() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=5)], now=0.0, me="me")
    seen.observe([lease("a", "w1", counter=6)], now=9.0, me="me")
    assert not seen.is_expired(lease("a", "w1", counter=6), 18.0)
    seen.observe([lease("a", "w1", counter=6)], now=19.5, me="me")
    assert seen.is_expired(lease("a", "w1", counter=6), 19.5)


def test_unowned_lease_is_available_at_once() -> None:
    seen = observations()
    free = lease("a", None, counter=3)
    seen.observe([free], now=50.0, me="me")
    assert seen.is_expired(free, 50.0)  # never seen renewed: no reason to wait


def test_a_different_counter_than_observed_is_never_expired() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=5)], now=0.0, me="me")
    assert not seen.is_expired(lease("a", "w1", counter=7), 100.0)


def test_a_lease_that_vanished_and_came_back_counts_as_new() -> None:
    seen = observations()
    seen.observe([lease("a", "w1"), lease("b", "w1")], now=0.0, me="me")
    seen.observe([lease("a", "w1")], now=20.0, me="me")
    seen.observe([lease("a", "w1"), lease("b", "w1")], now=21.0, me="me")
    assert seen.is_expired(lease("a", "w1"), 21.0)
    assert not seen.is_expired(lease("b", "w1"), 21.0)  # seen afresh: renewed as far as we know


def test_a_partial_read_keeps_what_it_did_not_read() -> None:
    seen = observations()
    seen.observe([lease("a", "w1"), lease("b", "w1")], now=0.0, me="me")
    seen.observe([lease("a", "w1", counter=2)], now=11.0, me="me", complete=False)
    assert seen.is_expired(lease("b", "w1"), 11.0)
    assert not seen.is_expired(lease("a", "w1", counter=2), 11.0)


def test_clock_is_local_and_monotonic_not_wall() -> None:
    seen = observations()
    owned = lease("a", "w1", counter=1)
    seen.observe([owned], now=1_000_000.0, me="me")
    assert not seen.is_expired(owned, 1_000_000.0 + FAILOVER - 0.001)


# --- suspicion: when to read again ----------------------------------------------------------------


def test_a_live_owner_renewing_on_time_asks_for_no_extra_read() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=10, renewals=10)], now=0.0, me="me")
    renewals = int(CYCLE / RENEWAL)  # six renewals in a taker cycle
    seen.observe([lease("a", "w1", counter=10 + renewals, renewals=10 + renewals)], now=CYCLE, me="me")
    assert seen.next_expiry_check(CYCLE) is None
    # Even one renewal late (a loaded renewer) is not suspicious.
    seen.observe([lease("a", "w1", counter=10 + 2 * renewals - 1, renewals=10 + 2 * renewals - 1)],
                 now=2 * CYCLE, me="me")
    assert seen.next_expiry_check(2 * CYCLE) is None


def test_an_owner_silent_for_longer_than_failover_asks_for_a_read_one_failover_later() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=10, renewals=10)], now=0.0, me="me")
    # Died after two renewals: silent for at least CYCLE - 2 x RENEWAL > FAILOVER before this read.
    seen.observe([lease("a", "w1", counter=12, renewals=12)], now=CYCLE, me="me")
    check = seen.next_expiry_check(CYCLE)
    assert check is not None and CYCLE + FAILOVER < check < CYCLE + FAILOVER + 0.1
    seen.observe([lease("a", "w1", counter=12, renewals=12)], now=check, me="me")
    assert seen.is_expired(lease("a", "w1", counter=12, renewals=12), check)


def test_checkpoints_do_not_hide_a_stopped_owner() -> None:
    """leaseCounter moved by 40 (checkpoints), but renewalCounter only twice: the owner may have stopped."""
    seen = observations()
    seen.observe([lease("a", "w1", counter=100, renewals=10)], now=0.0, me="me")
    seen.observe([lease("a", "w1", counter=140, renewals=12)], now=CYCLE, me="me")
    assert seen.next_expiry_check(CYCLE) is not None


def test_without_a_renewal_counter_the_lease_counter_is_used() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=10)], now=0.0, me="me")
    seen.observe([lease("a", "w1", counter=12)], now=CYCLE, me="me")
    assert seen.next_expiry_check(CYCLE) is not None


def test_a_static_counter_asks_for_a_read_when_it_would_expire() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=10, renewals=10)], now=0.0, me="me")
    seen.observe([lease("a", "w1", counter=10, renewals=10)], now=4.0, me="me")
    check = seen.next_expiry_check(4.0)
    assert check is not None and FAILOVER < check < FAILOVER + 0.1


def test_no_suspicion_for_own_unowned_finished_or_newly_moved_leases() -> None:
    seen = observations()
    first = [lease("mine", "me", 1, 1), lease("free", None, 1), lease("done", "w1", 1, 1, checkpoint=ESN_SHARD_END),
             lease("moved", "w1", 1, 1)]
    seen.observe(first, now=0.0, me="me")
    later = [lease("mine", "me", 1, 1), lease("free", None, 1), lease("done", "w1", 1, 1, checkpoint=ESN_SHARD_END),
             lease("moved", "w2", 2, 1)]
    seen.observe(later, now=CYCLE, me="me")
    assert seen.next_expiry_check(CYCLE) is None


def test_owner_changes_are_remembered_for_the_no_ping_pong_rule() -> None:
    seen = observations()
    seen.observe([lease("a", "w1")], now=0.0, me="me")
    assert not seen.moved_recently("a", 1.0, CYCLE)  # owned when first seen: not known to have moved
    seen.observe([lease("a", "w2", counter=2)], now=5.0, me="me")
    assert seen.moved_recently("a", 5.0 + CYCLE - 0.1, CYCLE)
    assert not seen.moved_recently("a", 5.0 + CYCLE + 0.1, CYCLE)


def test_a_handed_over_lease_counts_as_moved_from_when_the_handoff_completes() -> None:
    seen = observations()
    seen.observe([lease("a", "w1", counter=5)], now=0.0, me="me")
    seen.observe([lease("a", "w2", counter=6, checkpoint_owner="w1")], now=10.0, me="me")  # handoff asked for
    seen.observe([lease("a", "w2", counter=8)], now=15.0, me="me")  # completed
    assert seen.moved_recently("a", 15.0 + CYCLE - 0.1, CYCLE)
