"""agent: a native Python Kinesis Agent (file tailing into Kinesis Data Streams or Firehose)."""
