"""What user code implements: a :class:`RecordProcessor` per shard lease, fed :class:`Record` batches.

The lifecycle is amazon-kclpy v3's, so a kclpy processor ports by renaming its base class:

    initialize -> process_records* -> one of
        lease_lost                       (another worker has the shard; cannot checkpoint)
        shard_ended(checkpointer)        (resharding: must checkpoint, children wait for it)
        shutdown_requested(checkpointer) (graceful stop or rebalancing; checkpoint now), then lease_lost

Each method may be a plain function or a coroutine.  Plain ones run in a thread of their own per
shard, so blocking work there cannot stall other shards or the lease renewer; coroutines run on the
worker's event loop and must not block it.

Method signatures are checked when the processor class is loaded (:func:`check_processor_class`): a
processor written for amazon-kclpy (``initialize(self, initialize_input)``) would otherwise fail at
every call while its worker keeps the leases.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kcl.errors import ProcessorLoadError

if TYPE_CHECKING:
    from kcl.checkpointer import Checkpointer


@dataclass(slots=True)
class Record:
    """One user record.  KPL aggregates arrive already split into their sub-records.

    A plain (non-aggregated) record has ``sub_sequence_number`` 0 and no ``explicit_hash_key``
    (GetRecords does not return one).  ``(sequence_number, sub_sequence_number)`` is the record's
    position for :meth:`kcl.Checkpointer.checkpoint`.
    """

    data: bytes
    partition_key: str
    sequence_number: str
    sub_sequence_number: int
    approximate_arrival_timestamp: datetime | None
    explicit_hash_key: str | None
    aggregated: bool = False


@dataclass(frozen=True, slots=True)
class PendingCheckpoint:
    """A prepared (two-phase) checkpoint found on the lease: the Java InitializationInput's
    ``pendingCheckpointSequenceNumber`` and ``pendingCheckpointState``."""

    sequence_number: str
    sub_sequence_number: int
    state: bytes | None


class RecordProcessor:
    """Base class of record processors; override what you need (``process_records`` at least).

    One instance serves one shard lease for one tenure; the worker creates a fresh one from its
    factory whenever it (re)acquires a lease.
    """

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int,
                   pending_checkpoint: PendingCheckpoint | None = None) -> Any:
        """Called once before the first batch with the position processing resumes from.

        ``pending_checkpoint`` is the prepared checkpoint (and its application state) a previous owner
        left on the lease, None when there is none.  It is passed only to processors whose
        ``initialize`` declares that parameter (or ``**kwargs``), so three-argument processors keep working.
        """

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> Any:
        """Handle a batch.  Returning normally means the batch is done; raising means it is retried.

        Checkpoint when it suits you: ``checkpointer.checkpoint()`` records everything delivered so far.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement process_records")

    def lease_lost(self) -> Any:
        """The lease is gone (taken by another worker, or released after shutdown_requested)."""

    def shard_ended(self, checkpointer: Checkpointer) -> Any:
        """The shard was closed by a split or merge and every record has been delivered.

        The shard's children start only after this checkpoints (the default does).  Override it if you
        buffer records and flush the buffer before checkpointing.
        """
        return checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> Any:
        """The worker is stopping or handing this shard to another worker: checkpoint what is done."""


# --- checking a processor class ---------------------------------------------------------------------

#: The lifecycle methods and the arguments the worker passes (after ``self``).
EXPECTED_SIGNATURES: dict[str, tuple[str, ...]] = {
    "initialize": ("shard_id", "sequence_number", "sub_sequence_number"),
    "process_records": ("records", "checkpointer", "millis_behind_latest"),
    "lease_lost": (),
    "shard_ended": ("checkpointer",),
    "shutdown_requested": ("checkpointer",),
}

#: Where a processor written for amazon-kclpy belongs: MultiLang mode runs it unchanged.
MULTILANG_HINT = (
    "A processor written for amazon-kclpy runs unchanged in MultiLang mode: give kcl-worker the properties file "
    "that names it as executableName, without processor/--processor; or port it as docs/kcl.md "
    "('Migrating from the Java KCL or amazon-kclpy') shows."
)


@dataclass(frozen=True)
class ProcessorShape:
    """What the worker needs to know about a processor class once it passed the check."""

    #: ``initialize`` accepts ``pending_checkpoint=`` (declared, or through ``**kwargs``).
    takes_pending_checkpoint: bool


def _expected(name: str) -> str:
    extra = ", pending_checkpoint=None" if name == "initialize" else ""
    return f"{name}(self{''.join(', ' + arg for arg in EXPECTED_SIGNATURES[name])}{extra})"


def _call_signature(cls: type, name: str) -> inspect.Signature | None:
    """The signature a call through an instance sees (``self`` bound), None if it cannot be read."""
    raw = inspect.getattr_static(cls, name)
    try:
        signature = inspect.signature(getattr(cls, name))
    except (TypeError, ValueError):
        return None
    if isinstance(raw, (staticmethod, classmethod)) or not inspect.isfunction(raw):
        return signature
    parameters = list(signature.parameters.values())
    return signature.replace(parameters=parameters[1:]) if parameters else signature


def _accepts(signature: inspect.Signature, arguments: int, **keywords: Any) -> bool:
    try:
        signature.bind(*([None] * arguments), **keywords)
    except TypeError:
        return False
    return True


_checked: dict[type, ProcessorShape] = {}


def check_processor_class(cls: type) -> ProcessorShape:
    """Raise ProcessorLoadError unless every lifecycle method of ``cls`` takes the worker's arguments.

    Classes that do not derive from :class:`RecordProcessor` must define all five methods.  The result
    is remembered per class: a worker checks each new processor instance.
    """
    shape = _checked.get(cls)
    if shape is None:
        shape = _checked[cls] = _check(cls)
    return shape


def _check(cls: type) -> ProcessorShape:
    where = f"{cls.__module__}.{cls.__qualname__}"
    problems = []
    takes_pending = False
    for name, arguments in EXPECTED_SIGNATURES.items():
        method = getattr(cls, name, None)
        if method is None or not callable(method):
            problems.append(f"{name} is missing (expected {_expected(name)}; subclass kcl.RecordProcessor for "
                            "the defaults)")
            continue
        signature = _call_signature(cls, name)
        if signature is None:
            continue
        if not _accepts(signature, len(arguments)):
            problems.append(f"{name}{_render(signature)} does not match {_expected(name)}")
        elif name == "initialize":
            takes_pending = _accepts(signature, len(arguments), pending_checkpoint=None)
    if problems:
        raise ProcessorLoadError(f"record processor {where}: " + "; ".join(problems) + f". {MULTILANG_HINT}")
    return ProcessorShape(takes_pending_checkpoint=takes_pending)


def _render(signature: inspect.Signature) -> str:
    """``(self, a, b=1, *rest)``: the parameters as written, without annotations."""
    bare = signature.replace(parameters=[parameter.replace(annotation=inspect.Parameter.empty)
                                         for parameter in signature.parameters.values()],
                             return_annotation=inspect.Signature.empty)
    text = str(bare)
    return "(self)" if text == "()" else "(self, " + text[1:]
