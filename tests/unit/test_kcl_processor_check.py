"""Processor classes are checked when loaded: the worker's arguments must bind to every lifecycle method."""

from __future__ import annotations

from typing import Any

import pytest

import kcl
from kcl.processor import check_processor_class


class KclpyStyle:
    """amazon-kclpy v3's RecordProcessorBase shape: one input object per call."""

    def initialize(self, initialize_input: Any) -> None: ...

    def process_records(self, process_records_input: Any) -> None: ...

    def lease_lost(self, lease_lost_input: Any) -> None: ...

    def shard_ended(self, shard_ended_input: Any) -> None: ...

    def shutdown_requested(self, shutdown_requested_input: Any) -> None: ...


def test_a_kclpy_processor_is_refused_with_the_methods_the_expected_signatures_and_multilang() -> None:
    with pytest.raises(kcl.ProcessorLoadError) as caught:
        check_processor_class(KclpyStyle)
    message = str(caught.value)
    assert "KclpyStyle" in message
    assert ("initialize(self, initialize_input) does not match "
            "initialize(self, shard_id, sequence_number, sub_sequence_number, pending_checkpoint=None)") in message
    assert ("process_records(self, process_records_input) does not match "
            "process_records(self, records, checkpointer, millis_behind_latest)") in message
    assert "lease_lost(self, lease_lost_input) does not match lease_lost(self)" in message
    assert ("runs unchanged in MultiLang mode: give kcl-worker the properties file that names it as "
            "executableName, without processor/--processor") in message
    # One-argument shard_ended/shutdown_requested bind: they are not reported.
    assert "shard_ended(" not in message and "shutdown_requested(" not in message


def test_a_subclass_overriding_initialize_the_kclpy_way_is_refused() -> None:
    class Ported(kcl.RecordProcessor):
        def initialize(self, initialize_input: Any) -> None:  # type: ignore[override]
            ...

        def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None: ...

    with pytest.raises(kcl.ProcessorLoadError, match=r"initialize\(self, initialize_input\)"):
        check_processor_class(Ported)


def test_three_argument_initialize_does_not_get_the_pending_checkpoint() -> None:
    class Plain(kcl.RecordProcessor):
        def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:  # type: ignore[override]
            ...

        async def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None: ...

    assert check_processor_class(Plain).takes_pending_checkpoint is False


def test_initialize_declaring_pending_checkpoint_or_kwargs_gets_it() -> None:
    class Declared(kcl.RecordProcessor):
        def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int,
                       pending_checkpoint: kcl.PendingCheckpoint | None = None) -> None: ...

        def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None: ...

    class Flexible(kcl.RecordProcessor):
        def initialize(self, *args: Any, **kwargs: Any) -> None: ...

        def process_records(self, *args: Any) -> None: ...

    assert check_processor_class(Declared).takes_pending_checkpoint is True
    assert check_processor_class(Flexible).takes_pending_checkpoint is True
    assert check_processor_class(kcl.RecordProcessor).takes_pending_checkpoint is True


def test_a_class_not_derived_from_record_processor_must_define_every_method() -> None:
    class Partial:
        def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None: ...

        @staticmethod
        def lease_lost() -> None: ...

    with pytest.raises(kcl.ProcessorLoadError) as caught:
        check_processor_class(Partial)
    message = str(caught.value)
    assert "initialize is missing" in message and "shard_ended is missing" in message
    assert "shutdown_requested is missing" in message and "lease_lost" not in message
