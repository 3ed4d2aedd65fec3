"""A Kinesis flow's producer settings, derived from agent.json.

The agent's Kinesis flows ship through ``kpl.AsyncProducer``; this is the one place that turns a flow's
keys into a :class:`ProducerConfig`.  The configuration loader builds it too, so a value the producer
refuses is reported by ``--check-config`` instead of stopping the daemon at start-up.

``orderedDelivery`` asks for the producer's ordered mode (one Kinesis record in flight per shard, a
failed record retried before any later record of its shard) and a record time-to-live long enough that
the producer never hands a record back for being late: the agent would then send it again after
younger records, which is exactly the reordering the flow asked to avoid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kpl import MetricsLevel, ProducerConfig

if TYPE_CHECKING:
    from agent.config_types import AgentConfig, FlowConfig

#: ``orderedDelivery``: records are retried inside the producer for up to a year, i.e. until delivered.
ORDERED_RECORD_TTL_MS = 365 * 24 * 3600 * 1000


def producer_config(config: AgentConfig, flow: FlowConfig) -> ProducerConfig:
    client = config.kinesis_client
    producer = ProducerConfig(
        aggregation_enabled=flow.aggregation_enabled,
        # Credentials (awsAccessKeyId, assumeRoleARN), region and kinesis.endpoint from agent.json.
        client_config=client,
        metrics_level=MetricsLevel.NONE,
        # The Java agent's buffer limits are its PutRecords limits; they bound the producer's requests too.
        collection_max_count=flow.max_buffer_size_records,
        collection_max_size=max(52_224, flow.max_buffer_size_bytes),
        # The flow's byte budget already bounds what is outstanding; the producer's own bounds must
        # not be the tighter ones, or the flow would wait on them instead.
        max_outstanding_bytes=max(64 << 20, 2 * flow.publish_queue_capacity_bytes),
        max_outstanding_records=max(100_000, 2 * flow.publish_queue_capacity_bytes // 8),
    )
    if flow.ordered:
        producer = producer.with_(ordered_per_shard=True, record_ttl_ms=ORDERED_RECORD_TTL_MS)
    # The Java SDK's 50 s socket timeout would stall PutRecords for a minute on a dead connection; the
    # producer's own timeouts apply unless agent.json sets them.
    if "connectionTimeoutMillis" in config.explicit:
        producer = producer.with_(connect_timeout_ms=int(client.connect_timeout * 1000))
    if "socketTimeoutMillis" in config.explicit:
        producer = producer.with_(request_timeout_ms=int(client.read_timeout * 1000))
    if "maxConnections" in config.explicit:
        producer = producer.with_(max_connections=min(256, client.max_pool_connections))
    return producer
