"""Drives kafka-python's admin client through Sluice's config and cluster APIs.

Usage: python configs_check.py HOST:PORT TOPIC
TOPIC must exist with retention.ms=1000. Sets segment.ms=3600000 on it. Prints "ok" and exits 0
on success; used by server/tests/configs.rs.
"""
import sys

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sluice-test", request_timeout_ms=10000)

    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 0, cluster
    assert [broker["broker_id"] for broker in cluster["brokers"]] == [0], cluster
    assert cluster["cluster_id"], cluster

    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    configs = described["topic"][topic]
    assert configs["retention.ms"]["value"] == "1000", configs["retention.ms"]
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG", configs["retention.ms"]
    assert configs["segment.ms"]["config_source"] == "DEFAULT_CONFIG", configs["segment.ms"]
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    assert set(modified["topic"][topic]) == {"retention.ms"}, modified

    broker = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")], config_filter="all")
    assert broker["broker"]["0"]["node.id"]["value"] == "0", broker

    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.ms": "3600000"})])
    assert result["topic"][topic] == "OK", result
    after = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    assert after["topic"][topic]["segment.ms"]["value"] == "3600000", after

    admin.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
