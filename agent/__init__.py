"""agent: a native Python Kinesis Agent (file tailing into Kinesis Data Streams or Firehose)."""

import logging as _logging

# A library logs through the application's logging configuration, never around it (see kpl.logs).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
