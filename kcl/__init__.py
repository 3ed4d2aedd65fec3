"""kcl: a native Python Kinesis Client Library (consumer with DynamoDB leases)."""
