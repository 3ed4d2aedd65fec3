"""One child process of MultiLang mode and its three pipes.

Started as the Java MultiLangDaemon starts it (the command as given, the worker's environment and
working directory), in a process group of its own, so that a Ctrl-C on the worker's terminal reaches
the worker alone, which then stops its children through the protocol, and so that killing a child also
kills what it started (``executableName = sh run.sh``).

* stdout is read all the time by a task of its own, so that a child printing while the worker writes a
  large ``processRecords`` cannot deadlock the two.  Lines that are not protocol messages (debugging
  prints, the empty lines amazon-kclpy puts around its messages) are skipped, and logged unless empty,
  as the daemon does; messages queue for :meth:`ChildProcess.next_message`.
* stderr goes to the worker's log line by line (``child stderr``, with the shard and the child's pid).
  A line longer than :data:`MAX_LINE` is logged in pieces, and a last line without a newline when the
  child exits.
* When the child closes its stdout, exits, or does not answer within the timeout, the waiting call
  raises :class:`ChildFailed` saying which (with the exit status when there is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence

from kcl.multilang.messages import ChildMessage, decode
from kpl.logs import get_logger

log = get_logger(__name__)

#: Longest line read from the child's stdout or stderr in one piece.
MAX_LINE = 64 * 1024
#: How long the pipes are drained after the child exited (a grandchild may hold them open).
DRAIN_AFTER_EXIT = 1.0


class ChildFailed(Exception):
    """The child process exited, closed its stdout, could not be written to, or did not answer in time."""


class _EndOfOutput:
    pass


_EOF = _EndOfOutput()


async def read_lines(stream: asyncio.StreamReader, limit: int = MAX_LINE) -> AsyncIterator[str]:
    """The lines of ``stream`` without their line ends; longer ones in pieces of ``limit`` bytes."""
    pending = b""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = raw.removesuffix(b"\r")
            for start in range(0, max(len(line), 1), limit):
                yield line[start:start + limit].decode("utf-8", errors="replace")
        while len(pending) > limit:
            piece, pending = pending[:limit], pending[limit:]
            yield piece.decode("utf-8", errors="replace")


class ChildProcess:
    """A running child: send lines to its stdin, take messages from its stdout, end or kill it."""

    def __init__(self, process: asyncio.subprocess.Process, shard_id: str, command: Sequence[str]) -> None:
        self._process = process
        self.pid = process.pid
        self.shard_id = shard_id
        self.command = list(command)
        self._messages: asyncio.Queue[ChildMessage | _EndOfOutput] = asyncio.Queue()
        self._log = log.bind(shard=shard_id, pid=process.pid)
        self._stdout_task = asyncio.create_task(self._read_stdout(), name=f"kcl-multilang-stdout-{shard_id}")
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"kcl-multilang-stderr-{shard_id}")

    @classmethod
    async def start(cls, command: Sequence[str], shard_id: str, env: dict[str, str] | None = None) -> ChildProcess:
        """Start ``command``; OSError when it cannot be started (missing, not executable)."""
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, process_group=0,
        )
        child = cls(process, shard_id, command)
        child._log.info("started child process", command=" ".join(command))
        return child

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    # --- talking ------------------------------------------------------------------------------------

    async def send(self, line: bytes) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            if stdin.is_closing():
                raise ConnectionResetError("stdin closed")
            stdin.write(line)
            await stdin.drain()
        except (ConnectionError, OSError) as exc:
            raise ChildFailed(await self._describe_exit(f"its stdin could not be written to ({exc})")) from None

    async def next_message(self, timeout: float | None) -> ChildMessage:
        try:
            item = await asyncio.wait_for(self._messages.get(), timeout)
        except TimeoutError:
            raise ChildFailed(f"no message from the child process within {timeout:g} s (timeoutInSeconds)") from None
        if isinstance(item, _EndOfOutput):
            raise ChildFailed(await self._describe_exit("it closed its stdout"))
        return item

    async def _describe_exit(self, otherwise: str) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._process.wait()), DRAIN_AFTER_EXIT)
        code = self._process.returncode
        if code is None:
            return f"the child process is still running, but {otherwise}"
        if code < 0:
            return f"the child process was killed by {_signal_name(-code)}"
        return f"the child process exited with status {code}"

    # --- ending ---------------------------------------------------------------------------------------

    async def close(self, grace: float) -> int | None:
        """The end the daemon gives a child: EOF on its stdin, its output drained, its exit awaited.

        amazon-kclpy's loop ends at EOF.  A child still running ``grace`` seconds later is killed.
        """
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._process.wait()), grace)
        except TimeoutError:
            self._log.warning("child process did not exit after its stdin was closed; killing it", grace=grace)
            self.kill()
        except BaseException:
            self.kill()
            raise
        return await self.reap()

    def kill(self) -> None:
        """SIGKILL to the child's process group (the child and whatever it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    async def reap(self) -> int | None:
        """Wait for the (exiting or killed) child and for the last of its output."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._process.wait()), 10.0)
        for task in (self._stdout_task, self._stderr_task):
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), DRAIN_AFTER_EXIT)
            task.cancel()
        code = self._process.returncode
        self._log.info("child process ended", returncode=code)
        return code

    # --- reading --------------------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            async for line in read_lines(stdout):
                message = decode(line)
                if message is not None:
                    self._messages.put_nowait(message)
                elif line.strip():
                    self._log.info("skipping a line of the child's stdout that is not a protocol message",
                                   line=line)
        except Exception as exc:  # a pipe error: the end of the output, as far as the protocol goes
            self._log.info("reading the child's stdout failed", error=str(exc))
        finally:
            self._messages.put_nowait(_EOF)

    async def _read_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        with contextlib.suppress(Exception):
            async for line in read_lines(stderr):
                self._log.info("child stderr", line=line)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def kill_group(pid: int) -> None:
    """SIGKILL a child's process group from outside the event loop (a worker that ended abnormally)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
