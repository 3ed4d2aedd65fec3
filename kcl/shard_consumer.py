"""One shard lease, one tenure: the state machine that feeds a record processor.

    WAITING_ON_PARENTS -> INITIALIZING -> PROCESSING -> SHARD_END
                                                     -> LEASE_LOST          (lease_lost)
                                                     -> SHUTDOWN_REQUESTED  (shutdown_requested, release, lease_lost)
                  any of them: the processor raises ReleaseLeaseError -> released (no further call)

One call into the processor is in flight at a time, so a shard's records are processed in order.
Before every call the tenure is checked (lease still held, not self-fenced); a lost lease stops
dispatch at the next batch boundary.  A failing ``process_records`` is retried with backoff —
never skipped silently — or, when a dead-letter callback is configured, handed to it after
``max_processing_attempts`` so processing can move on.  A processor that cannot go on at all (the
MultiLang processor whose child process died) raises :class:`kcl.ReleaseLeaseError`: the tenure ends
there and the lease is released without a checkpoint, so the shard is taken again from its last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import inspect
import operator
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tenacity import stop_never

from kcl.checkpointer import Checkpointer
from kcl.config import DeadLetter, WorkerConfig
from kcl.deaggregation import Deaggregator
from kcl.errors import ReleaseLeaseError, ShardReadError
from kcl.metrics import INITIALIZE_TASK, SHUTDOWN_TASK, KclMetrics
from kcl.ports import ShardCoordinator
from kcl.processor import PendingCheckpoint, Record, RecordProcessor, check_processor_class
from kcl.renewer import HeldLease, HeldLeases
from kcl.retrieval import BatchQueue, FetchedBatch, StartingPosition
from kcl.sequence import ESN_SHARD_END, ExtendedSequenceNumber
from kpl.logs import get_logger
from kpl.retry import Backoff, retrying

log = get_logger(__name__)

_data = operator.attrgetter("data")


class ConsumerState(enum.Enum):
    WAITING_ON_PARENTS = "waiting on parents"
    INITIALIZING = "initializing"
    PROCESSING = "processing"
    SHUTTING_DOWN = "shutting down"
    SHARD_END = "shard end"
    LEASE_LOST = "lease lost"
    SHUTDOWN_COMPLETE = "shutdown complete"


class Outcome(enum.Enum):
    SHARD_END = "shard end"
    LEASE_LOST = "lease lost"
    SHUTDOWN = "shutdown"
    RELEASED = "released by the processor"


FetcherFactory = Callable[[str, StartingPosition, BatchQueue], Any]


class _Stop(Exception):
    """Internal: leave the current phase because the tenure ended."""


class _NotCheckpointed(Exception):
    """Internal: shard_ended returned without checkpointing SHARD_END (it is called again)."""


def _retried(error: BaseException) -> bool:
    """A processor call that failed is retried; the end of the tenure and a processor giving up are not."""
    return isinstance(error, Exception) and not isinstance(error, (_Stop, ReleaseLeaseError))


class ShardConsumer:
    """Drives one processor through one lease tenure."""

    def __init__(
        self, *, held: HeldLease, held_leases: HeldLeases, processor: RecordProcessor, coordinator: ShardCoordinator,
        fetcher_factory: FetcherFactory, deaggregator: Deaggregator, config: WorkerConfig, metrics: KclMetrics,
    ) -> None:
        self.shard_id = held.shard_id
        self.token = held.token
        self.state = ConsumerState.WAITING_ON_PARENTS
        self._held_leases = held_leases
        self._start = held.lease.checkpoint
        self._parents = held.lease.parent_shard_ids
        self._processor = processor
        self._coordinator = coordinator
        self._fetcher_factory = fetcher_factory
        self._deaggregator = deaggregator
        self._config = config
        self._metrics = metrics
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kcl-processor-{self.shard_id}")
        self._checkpointer = Checkpointer(self.shard_id, held.token, held_leases, coordinator.table, self._start)
        self._initialize_extras: dict[str, Any] = {}
        if check_processor_class(type(processor)).takes_pending_checkpoint:
            pending = held.lease.pending_checkpoint
            self._initialize_extras["pending_checkpoint"] = None if pending is None else PendingCheckpoint(
                pending.sequence_number, pending.sub_sequence_number, held.lease.pending_checkpoint_state)
        self._stop_reason: Outcome | None = None
        self._shutdown_timeout = config.graceful_shutdown_timeout_ms / 1000
        self._wake = asyncio.Event()
        self._initialized = False
        self._fetch_task: asyncio.Task[None] | None = None
        self._child_shards: list[dict[str, Any]] = []
        self._backoff = Backoff(config.task_backoff_time_ms / 1000, config.max_task_backoff_time_ms / 1000)
        self._log = log.bind(shard=self.shard_id)

    def checkpoint_age(self, now: float) -> float:
        """Seconds processed records have waited for a checkpoint (see Checkpointer.checkpoint_age)."""
        return self._checkpointer.checkpoint_age(now)

    # --- requests from the worker ---------------------------------------------------------------

    def request_shutdown(self, timeout: float) -> None:
        """Finish the batch in hand, call shutdown_requested, hand the lease back."""
        if self._stop_reason is None:
            self._stop_reason = Outcome.SHUTDOWN
            self._shutdown_timeout = timeout
            self._wake.set()

    def lease_lost(self) -> None:
        if self._stop_reason is not Outcome.LEASE_LOST:
            self._stop_reason = Outcome.LEASE_LOST
            self._wake.set()

    # --- the state machine ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        try:
            try:
                await self._wait_for_parents()
                if self._start.is_shard_end:
                    # A finished shard (e.g. a Java worker's, or released after SHARD_END): nothing to read.
                    await self._coordinator.shard_completed(self.shard_id, self.token)
                    self.state = ConsumerState.SHARD_END
                    return Outcome.SHARD_END
                await self._initialize()
                await self._process()
                await self._end_of_shard()
                self.state = ConsumerState.SHARD_END
                return Outcome.SHARD_END
            except _Stop:
                pass
            except ReleaseLeaseError as exc:
                return await self._give_up(exc)
            return await self._finish()
        finally:
            await self._stop_fetcher()
            self._thread.shutdown(wait=False)

    async def _finish(self) -> Outcome:
        reason = self._stop_reason or Outcome.LEASE_LOST
        if reason is Outcome.SHUTDOWN:
            self.state = ConsumerState.SHUTTING_DOWN
            await self._stop_fetcher()
            if self._initialized:
                await self._call_bounded("shutdown_requested", self._checkpointer)
            await self._coordinator.relinquish(self.shard_id, self.token)
        else:
            self.state = ConsumerState.LEASE_LOST
        if self._initialized:
            await self._call_bounded("lease_lost")
        if reason is Outcome.SHUTDOWN:
            self.state = ConsumerState.SHUTDOWN_COMPLETE
        return reason

    async def _give_up(self, error: ReleaseLeaseError) -> Outcome:
        """The processor cannot go on: release the lease as it stands (nothing is checkpointed here)."""
        self.state = ConsumerState.SHUTTING_DOWN
        self._log.error("record processor gave up the shard; releasing the lease", reason=str(error),
                        checkpoint=str(self._checkpointer.last_checkpoint))
        await self._stop_fetcher()
        await self._coordinator.relinquish(self.shard_id, self.token)
        self.state = ConsumerState.SHUTDOWN_COMPLETE
        return Outcome.RELEASED

    def _check(self, *, finishing_shard: bool = False) -> None:
        """Raise _Stop when the tenure is over (a request, or the lease lost or fenced).

        ``finishing_shard``: once the end of the shard has been delivered, a shutdown request waits for
        the shard-end protocol (a few quick calls) so that the processor sees shard_ended; only a
        lost lease interrupts it.
        """
        if self._stop_reason is Outcome.LEASE_LOST or (self._stop_reason is not None and not finishing_shard):
            raise _Stop
        if not self._held_leases.is_current(self.shard_id, self.token):
            self._stop_reason = Outcome.LEASE_LOST
            raise _Stop

    async def _pause(self, seconds: float, *, finishing_shard: bool = False) -> None:
        """Sleep, but wake at once for a stop request that applies."""
        if finishing_shard:
            await asyncio.sleep(seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        self._check(finishing_shard=finishing_shard)

    async def _wait_for_parents(self) -> None:
        if not self._parents:
            return
        poll = self._config.parent_shard_poll_interval_ms / 1000
        while True:
            self._check()
            try:
                unfinished = await self._coordinator.unfinished_parents(self._parents)
            except Exception as exc:
                self._log.warning("cannot read parent leases; retrying", error=str(exc))
                unfinished = set(self._parents)
            if not unfinished:
                return
            signal = self._coordinator.shard_end_signal()
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waker, asyncio.ensure_future(signal.wait())}, timeout=poll,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()

    async def _initialize(self) -> None:
        self.state = ConsumerState.INITIALIZING
        # stop_never: a failing initialize is retried for as long as the tenure lasts (docs/kcl.md, "Errors in
        # process_records"); _pause ends the loop when it does.
        async for attempt in retrying(wait=self._backoff.wait, stop=stop_never, retry_on=_retried, sleep=self._pause):
            with attempt:
                self._check()
                try:
                    await self._call("initialize", self.shard_id, self._start.sequence_number,
                                     self._start.sub_sequence_number, **self._initialize_extras)
                except Exception as exc:
                    if _retried(exc):
                        self._metrics.processor_call(INITIALIZE_TASK, self.shard_id, False)
                        self._log.exception("record processor failed to initialize; retrying",
                                            attempt=attempt.retry_state.attempt_number)
                    raise
        self._initialized = True

    async def _process(self) -> None:
        """Dispatch batches until the end of the shard (returns) or the tenure ends (raises _Stop)."""
        self.state = ConsumerState.PROCESSING
        queue = BatchQueue(self._config.max_pending_process_records_input, self._config.max_cache_byte_size)
        position = StartingPosition.from_checkpoint(self._start, self._config.initial_timestamp)
        self._start_fetcher(position, queue)
        skip_through = None if self._start.is_sentinel else self._start.sort_key()
        fetch_failures = 0
        while True:
            self._check()
            batch = await self._next_batch(queue)
            if batch is None:
                failure = self._fetch_failure()
                fetch_failures += 1
                self._log.error("reading the shard failed; restarting the reader", error=str(failure),
                                attempt=fetch_failures)
                await self._pause(self._backoff.delay(fetch_failures))
                last = self._checkpointer.last_processed
                restart = position
                if not last.is_sentinel:
                    # AT, not AFTER: the last record processed may sit inside an aggregate whose remaining
                    # sub-records are still due; everything up to it is skipped again.
                    restart = StartingPosition("AT_SEQUENCE_NUMBER", last.sequence_number)
                    skip_through = last.sort_key()
                queue = BatchQueue(queue.max_batches, queue.max_bytes)
                self._start_fetcher(restart, queue)
                continue
            fetch_failures = 0
            records = self._deaggregator.deaggregate(batch.records)
            if self._deaggregator.dropped_aggregates:
                self._metrics.aggregates_dropped(self.shard_id, self._deaggregator.dropped_aggregates)
                self._deaggregator.dropped_aggregates = 0
            if skip_through is not None and records:
                records = [r for r in records if (1, int(r.sequence_number), r.sub_sequence_number) > skip_through]
                if records:
                    skip_through = None
            if records or self._config.call_process_records_even_for_empty_record_list:
                await self._dispatch(records, batch.millis_behind_latest)
            if batch.at_shard_end:
                self._child_shards = batch.child_shards or []
                return

    async def _dispatch(self, records: list[Record], millis_behind_latest: int) -> None:
        last = ExtendedSequenceNumber(records[-1].sequence_number, records[-1].sub_sequence_number) if records else None
        checkpointer = self._checkpointer
        # stop_never: a failing batch is retried until it succeeds, goes to the dead-letter callback, or the tenure
        # ends (docs/kcl.md, "Errors in process_records": never skipped silently); _pause ends the loop with the tenure.
        async for attempt in retrying(wait=self._backoff.wait, stop=stop_never, retry_on=_retried, sleep=self._pause):
            with attempt:
                self._check()
                if last is not None:
                    # While process_records runs the processor may checkpoint these records; once it returns
                    # normally they are processed, and a checkpoint() without arguments covers them.
                    checkpointer.batch_started(last)
                started = time.monotonic()
                try:
                    await self._call("process_records", records, checkpointer, millis_behind_latest)
                except BaseException as exc:
                    # Raised, cancelled or abandoned: none of the batch is processed, whatever comes next
                    # (a retry, shutdown_requested, a handoff) cannot checkpoint it.
                    checkpointer.batch_failed()
                    if not isinstance(exc, Exception) or not _retried(exc):
                        raise
                    number = attempt.retry_state.attempt_number
                    self._metrics.processing_failed(self.shard_id, type(exc).__name__)
                    self._log.error("record processor failed on a batch", attempt=number, records=len(records),
                                    first_sequence_number=records[0].sequence_number if records else None,
                                    exc_info=exc)
                    if not (self._config.dead_letter is not None and number >= self._config.max_processing_attempts
                            and await self._dead_letter(records, exc, number)):
                        raise
                    if last is not None:
                        checkpointer.batch_done(last)
                    return
                if last is not None:
                    checkpointer.batch_done(last)
                self._metrics.batch_processed(self.shard_id, len(records), sum(map(len, map(_data, records))),
                                              millis_behind_latest, time.monotonic() - started)

    async def _dead_letter(self, records: list[Record], error: Exception, attempts: int) -> bool:
        callback = self._config.dead_letter
        assert callback is not None
        try:
            await self._run_user(callback, DeadLetter(self.shard_id, records, error, attempts))
        except Exception:
            self._log.exception("dead-letter callback failed; retrying the batch")
            return False
        self._metrics.dead_lettered(self.shard_id, len(records))
        self._log.error("batch handed to the dead-letter callback; continuing after it", records=len(records))
        return True

    async def _end_of_shard(self) -> None:
        """Create the children's leases, let the processor checkpoint SHARD_END, then free the lease."""
        try:
            await self._coordinator.create_children(self.shard_id, self.token, self._child_shards)
        except Exception as exc:
            # The coordinator gave up because this tenure or the worker is ending: SHARD_END is not recorded
            # without the children, and the shard's next owner reads its end again and creates them.
            self._check(finishing_shard=True)
            self._log.info("shard end not recorded: the worker stopped before the child leases were created",
                           error=str(exc))
            self._stop_reason = self._stop_reason or Outcome.SHUTDOWN
            raise _Stop from exc
        checkpointer = self._checkpointer
        checkpointer.at_shard_end()
        # stop_never: shard_ended is called until it checkpoints SHARD_END (the children cannot start before), or
        # the lease is lost (docs/kcl.md, "Errors in process_records"); _pause ends the loop then.
        async for attempt in retrying(wait=self._backoff.wait, stop=stop_never, retry_on=_retried,
                                      sleep=functools.partial(self._pause, finishing_shard=True)):
            with attempt:
                self._check(finishing_shard=True)
                try:
                    await self._call("shard_ended", checkpointer)
                except Exception as exc:
                    if _retried(exc):
                        self._metrics.processor_call(SHUTDOWN_TASK, self.shard_id, False)
                        self._log.exception("shard_ended failed; retrying", attempt=attempt.retry_state.attempt_number)
                    raise
                if not checkpointer.last_checkpoint.is_shard_end:
                    await self._record_shard_end()
        await self._coordinator.shard_completed(self.shard_id, self.token)

    async def _record_shard_end(self) -> None:
        """After a shard_ended that did not checkpoint SHARD_END: record it if nothing can be skipped, else
        raise _NotCheckpointed (shard_ended is called again)."""
        checkpointer = self._checkpointer
        if checkpointer.last_checkpoint != checkpointer.last_processed:
            self._log.error("shard_ended returned without checkpointing: the shard's children cannot start "
                            "until it does; calling it again", last_checkpoint=str(checkpointer.last_checkpoint),
                            last_processed=str(checkpointer.last_processed))
            raise _NotCheckpointed
        # Everything processed is checkpointed: recording SHARD_END cannot skip anything.
        await self._coordinator.table.call(checkpointer.checkpoint, ESN_SHARD_END)

    # --- fetcher ----------------------------------------------------------------------------------

    def _start_fetcher(self, position: StartingPosition, queue: BatchQueue) -> None:
        fetcher = self._fetcher_factory(self.shard_id, position, queue)
        self._fetch_task = asyncio.create_task(fetcher.run(), name=f"kcl-fetch-{self.shard_id}")

    async def _stop_fetcher(self) -> None:
        task, self._fetch_task = self._fetch_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _fetch_failure(self) -> BaseException | None:
        task = self._fetch_task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def _next_batch(self, queue: BatchQueue) -> FetchedBatch | None:
        """The next batch; None when the fetcher died on an error.  Raises _Stop on a stop request."""
        getter = asyncio.ensure_future(queue.get())
        waker = asyncio.ensure_future(self._wake.wait())
        fetch_task = self._fetch_task
        assert fetch_task is not None
        try:
            while not getter.done():
                waiting: set[asyncio.Future[Any]] = {getter, waker}
                if not fetch_task.done():
                    waiting.add(fetch_task)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    break
                if waker.done():
                    raise _Stop
                if fetch_task.done() and not len(queue):
                    error = fetch_task.exception() if not fetch_task.cancelled() else None
                    if error is not None and not isinstance(error, ShardReadError):
                        self._log.error("shard reader crashed", exc_info=error)
                    return None
        finally:
            waker.cancel()
            if not getter.done():
                getter.cancel()
        return getter.result()

    # --- calling user code ------------------------------------------------------------------------

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run_user(getattr(self._processor, name), *args, **kwargs)

    async def _run_user(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Coroutines run on the loop; plain functions on this shard's own thread."""
        if inspect.iscoroutinefunction(function):
            return await function(*args, **kwargs)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._thread, functools.partial(function, *args, **kwargs))
        if inspect.isawaitable(result):
            return await result
        return result

    async def _call_bounded(self, name: str, *args: Any) -> None:
        """A lifecycle call at the end of a tenure: errors are logged, and it may not take forever."""
        try:
            await asyncio.wait_for(self._call(name, *args), self._shutdown_timeout)
        except TimeoutError:
            self._log.error("record processor did not return in time; moving on", method=name,
                            timeout=self._shutdown_timeout)
        except Exception:
            self._log.exception("record processor failed", method=name)
