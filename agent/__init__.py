"""agent: a native Python Kinesis Agent (file tailing into Kinesis Data Streams or Firehose).

A program, ``kinesis-agent``, not a library: its modules are private and may change in any release.
What it reads (the Java agent's ``agent.json``) and what it does are its interface (docs/agent.md).
Code that wants to send records uses ``kpl``; code that wants to read them uses ``kcl``.
"""

import logging as _logging

__all__: list[str] = []

# A library logs through the application's logging configuration, never around it (see kpl.logs).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
