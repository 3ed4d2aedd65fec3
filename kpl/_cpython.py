"""The CPython internals the toolkit relies on, named in one place so an upgrade that changes them fails one test.

:class:`kpl.futures.ThreadFuture` is a ``concurrent.futures.Future`` that provides the base class's
state itself instead of running its ``__init__`` (which makes a lock and two lists per future, too
many for a producer that makes one future per record).  The base class's methods, and
``concurrent.futures.wait``/``as_completed``, read those attributes and the state constants by name;
they are private to ``concurrent.futures._base``, stable since Python 3.2 but promised by nothing.
``tests/unit/test_internals_contract.py`` checks them against the running interpreter.
"""

from __future__ import annotations

from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from concurrent.futures._base import LOGGER as FUTURES_LOGGER

#: Every attribute ``concurrent.futures.Future.__init__`` sets; ThreadFuture provides each of them.
FUTURE_ATTRIBUTES = frozenset({"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"})

__all__ = ["CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED", "FUTURES_LOGGER", "FUTURE_ATTRIBUTES", "PENDING",
           "RUNNING"]
