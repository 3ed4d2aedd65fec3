"""The end-to-end demo: access log → kinesis-agent → Kinesis → kcl-worker analytics and an S3 archive."""
