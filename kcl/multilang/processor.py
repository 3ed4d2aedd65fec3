"""The MultiLang record processor: a :class:`kcl.RecordProcessor` whose work is done by a child process.

One instance per shard tenure, as the worker makes every processor.  ``initialize`` starts the child
and sends it ``initialize``; every other lifecycle call becomes the matching message, and returns once
the child's ``status`` for it has arrived.  Meanwhile the child may ask for checkpoints, which go to
the tenure's :class:`kcl.Checkpointer` (so every rule of the native API holds: nothing past the records
whose ``processRecords`` the child has confirmed, nothing after the lease is gone) and whose outcome is
written back, an error by the name amazon-kclpy knows.  Checkpoint requests while no checkpointer is in
scope (``initialize``, ``leaseLost``) are answered ``InvalidStateException``, as the daemon does.

Where the Java daemon exits the whole JVM (a child that exited, a ``status`` for another action, no
message within ``timeoutInSeconds``), the child is killed and :class:`kcl.ReleaseLeaseError` ends this
shard's tenure alone: the lease is released without a checkpoint and the shard is picked up again, here
or on another worker, from what the child last checkpointed.  A shard whose children keep failing on
this worker is restarted after a growing pause (``taskBackoffTimeMillis`` doubling up to
:data:`MAX_RESTART_DELAY`).

After ``leaseLost`` or ``shardEnded`` the child's stdin is closed, as the daemon does; amazon-kclpy
exits at that EOF (and at the EOF a worker killed with ``kill -9`` leaves).  The coroutines are
cancelled when a graceful stop runs out of time; the child is then killed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kcl.checkpointer import Checkpointer
from kcl.config import WorkerConfig
from kcl.errors import CheckpointError, ReleaseLeaseError
from kcl.multilang import messages
from kcl.multilang.child import ChildFailed, ChildProcess, kill_group
from kcl.multilang.command import resolve_command
from kcl.processor import PendingCheckpoint, Record, RecordProcessor
from kpl.errors import ConfigurationError, InvalidArgumentError
from kpl.logs import get_logger
from kpl.retry import Backoff

log = get_logger(__name__)

#: The longest pause before a failed shard's next child is started.
MAX_RESTART_DELAY = 10.0
#: How long a child may take to exit once its stdin is closed after its last message.
EXIT_GRACE = 5.0


class MultiLangProcessorFactory:
    """Makes a :class:`MultiLangProcessor` per shard tenure, all running ``command``.

    ``command`` is the program and its arguments (``kcl.multilang.resolve_command`` turns a properties
    file's ``executableName`` into one).  ``timeout``: seconds to wait for each message of a child, None
    to wait as long as it takes.  :meth:`kill_remaining` kills children still running, for a program
    that ends without the worker's graceful stop.
    """

    def __init__(self, command: Sequence[str], *, timeout: float | None = None, env: dict[str, str] | None = None,
                 restart_backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        if not command:
            raise InvalidArgumentError("command must not be empty")
        self.command = list(command)
        self.timeout = timeout
        self.env = env
        self._backoff = Backoff(*restart_backoff)
        self._failures: dict[str, int] = {}
        self._children: set[ChildProcess] = set()

    @classmethod
    def from_config(cls, config: WorkerConfig, directory: Path) -> MultiLangProcessorFactory:
        """The factory ``config.executable_name`` asks for, its program resolved against ``directory``
        (a properties file's) and then PATH; ConfigurationError when it names no executable file."""
        if not config.executable_name:
            raise ConfigurationError("MultiLang mode needs executableName (the program to run per shard)")
        command = resolve_command(config.executable_name, directory)
        return cls(command, timeout=config.timeout_in_seconds,
                   restart_backoff=(config.task_backoff_time_ms / 1000, config.max_task_backoff_time_ms / 1000))

    def __call__(self) -> MultiLangProcessor:
        return MultiLangProcessor(self)

    @property
    def children(self) -> list[ChildProcess]:
        """The children running now."""
        return [child for child in self._children if child.returncode is None]

    def kill_remaining(self) -> int:
        """SIGKILL every child still running (and its process group); how many there were."""
        remaining = self.children
        for child in remaining:
            kill_group(child.pid)
        self._children.clear()
        return len(remaining)

    # --- bookkeeping for the processors ---------------------------------------------------------------

    def _restart_delay(self, shard_id: str) -> float:
        failures = self._failures.get(shard_id, 0)
        return min(MAX_RESTART_DELAY, self._backoff.delay(failures)) if failures else 0.0

    def _failed(self, shard_id: str) -> None:
        self._failures[shard_id] = self._failures.get(shard_id, 0) + 1

    def _succeeded(self, shard_id: str) -> None:
        self._failures.pop(shard_id, None)


class MultiLangProcessor(RecordProcessor):
    """Speaks the MultiLang protocol to one child process for one shard tenure."""

    def __init__(self, factory: MultiLangProcessorFactory) -> None:
        self._factory = factory
        self._child: ChildProcess | None = None
        self._shard = "?"
        self._log = log

    async def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int,
                         pending_checkpoint: PendingCheckpoint | None = None) -> None:
        # A prepared checkpoint is not part of the protocol's initialize message (nor of amazon-kclpy's).
        self._shard = shard_id
        self._log = log.bind(shard=shard_id)
        delay = self._factory._restart_delay(shard_id)
        if delay:
            self._log.info("waiting before starting the shard's child process again", seconds=round(delay, 2))
            await asyncio.sleep(delay)
        try:
            child = await ChildProcess.start(self._factory.command, shard_id, self._factory.env)
        except OSError as exc:
            self._factory._failed(shard_id)
            raise ReleaseLeaseError(f"cannot start {self._factory.command[0]}: {exc.strerror or exc}") from None
        self._child = child
        self._factory._children.add(child)
        await self._exchange(messages.encode_initialize(shard_id, sequence_number, sub_sequence_number),
                             messages.INITIALIZE, None)

    async def process_records(self, records: list[Record], checkpointer: Checkpointer,
                              millis_behind_latest: int) -> None:
        line = messages.encode_process_records(records, millis_behind_latest)
        await self._exchange(line, messages.PROCESS_RECORDS, checkpointer)
        self._factory._succeeded(self._shard)

    async def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        if self._live():
            await self._exchange(messages.encode_action(messages.SHUTDOWN_REQUESTED), messages.SHUTDOWN_REQUESTED,
                                 checkpointer)

    async def lease_lost(self) -> None:
        if self._live():
            await self._exchange(messages.encode_action(messages.LEASE_LOST), messages.LEASE_LOST, None)
            await self._close()

    async def shard_ended(self, checkpointer: Checkpointer) -> None:
        if not self._live():
            # Called again: the child's shardEnded did not checkpoint, and it has ended since.
            raise ReleaseLeaseError("the child process did not checkpoint at the end of the shard; the next "
                                    "child resumes from the last checkpoint and gets shardEnded again")
        await self._exchange(messages.encode_action(messages.SHARD_ENDED), messages.SHARD_ENDED, checkpointer)
        await self._close()

    # --- the protocol -----------------------------------------------------------------------------------

    def _live(self) -> bool:
        return self._child is not None and self._child.returncode is None

    async def _exchange(self, line: bytes, action: str, checkpointer: Checkpointer | None) -> None:
        """Send one message and serve the child until its ``status`` for it; any failure kills the child."""
        child = self._child
        assert child is not None
        timeout = self._factory.timeout
        try:
            try:
                await asyncio.wait_for(child.send(line), timeout)
            except TimeoutError:
                raise ChildFailed(f"the child process did not read {action} within {timeout:g} s "
                                  "(timeoutInSeconds)") from None
            while True:
                message = await child.next_message(timeout)
                if isinstance(message, messages.CheckpointRequest):
                    outcome = await self._checkpoint(message, checkpointer, action)
                    await child.send(messages.encode_checkpoint_outcome(
                        message.sequence_number, message.sub_sequence_number, outcome))
                elif isinstance(message, messages.Status):
                    if message.response_for != action:
                        raise ChildFailed(f"the child process answered status for {message.response_for!r} while "
                                          f"{action!r} was outstanding")
                    return
                else:
                    self._log.warning("ignoring a message the child process should not send", action=message.action,
                                      waiting_for=action)
        except ChildFailed as exc:
            self._factory._failed(self._shard)
            child.kill()
            await child.reap()
            self._factory._children.discard(child)
            raise ReleaseLeaseError(f"{action}: {exc}") from None
        except BaseException:
            # Cancelled (a graceful stop out of time) or a bug: the child must not outlive this tenure.
            child.kill()
            self._factory._children.discard(child)
            raise

    async def _checkpoint(self, request: messages.CheckpointRequest, checkpointer: Checkpointer | None,
                          action: str) -> str | None:
        if checkpointer is None:
            self._log.warning("the child process asked for a checkpoint where none is possible", during=action)
            return messages.INVALID_STATE_EXCEPTION
        started = time.monotonic()
        try:
            sequence_number, sub_sequence_number = messages.checkpoint_arguments(request)
            if sequence_number is None:
                await checkpointer.acheckpoint()
            else:
                await checkpointer.acheckpoint(sequence_number, sub_sequence_number)
        except CheckpointError as exc:
            name = messages.checkpoint_error_name(exc)
            self._log.info("checkpoint refused", error=name, detail=str(exc),
                           sequence_number=request.sequence_number, sub_sequence_number=request.sub_sequence_number)
            return name
        except Exception as exc:
            self._log.error("checkpoint failed", error=str(exc), sequence_number=request.sequence_number)
            return messages.DEPENDENCY_EXCEPTION
        self._log.debug("checkpointed", checkpoint=str(checkpointer.last_checkpoint),
                        seconds=round(time.monotonic() - started, 3))
        return None

    async def _close(self) -> None:
        child = self._child
        if child is None:
            return
        try:
            await child.close(EXIT_GRACE)
        finally:
            self._factory._children.discard(child)

    def __repr__(self) -> str:
        child: Any = self._child.pid if self._child is not None else None
        return f"MultiLangProcessor(shard={self._shard!r}, pid={child})"
