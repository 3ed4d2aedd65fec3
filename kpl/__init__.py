"""kpl: a native Python Kinesis Producer Library."""

__version__ = "0.1.0"
