"""MultiLang mode: amazon-kclpy (and Node, Ruby, .NET, ...) consumer programs, run as the Java
MultiLangDaemon runs them, without a JVM.

``kcl-worker --config app.properties`` with ``executableName`` (and no ``processor``) starts, for each
shard lease it holds, a child process from ``executableName`` and talks the MultiLang protocol to it:
one JSON message per line on the child's stdin, checkpoint requests and status replies on its stdout,
its stderr into the worker's log.  The worker, its leases and its checkpoint rules are the native ones:
the child is driven by :class:`MultiLangProcessor`, an ordinary :class:`kcl.RecordProcessor`, so
MultiLang workers and native workers share one lease table.

From Python::

    factory = kcl.multilang.MultiLangProcessorFactory.from_config(config, Path("app.properties").parent)
    kcl.Worker(stream, application, factory, config).run_forever()

Modules: :mod:`~kcl.multilang.messages` (the protocol's messages), :mod:`~kcl.multilang.child` (a
child process and its pipes), :mod:`~kcl.multilang.processor` (the protocol, per shard),
:mod:`~kcl.multilang.command` (``executableName`` to a command line).
"""

from kcl.multilang.command import resolve_command
from kcl.multilang.processor import MultiLangProcessor, MultiLangProcessorFactory

__all__ = ["MultiLangProcessor", "MultiLangProcessorFactory", "resolve_command"]
