"""Connects kafka-python to a Sluice agent and checks the metadata it gets back.

Usage: python metadata_check.py HOST:PORT TOPIC PARTITIONS
The agent must already have TOPIC with PARTITIONS partitions. Prints "ok" and exits 0 on
success; used by server/tests/kafka_python.rs.
"""
import sys

from kafka import KafkaAdminClient, KafkaConsumer


def main() -> int:
    bootstrap, topic, partition_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sluice-test", request_timeout_ms=10000)
    cluster = admin.describe_cluster()
    brokers = cluster["brokers"]
    assert len(brokers) == 1, cluster
    assert brokers[0]["broker_id"] == 0, cluster
    assert cluster["controller_id"] == 0, cluster
    assert topic in admin.list_topics(), admin.list_topics()
    admin.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="sluice-test", request_timeout_ms=10000)
    topics = consumer.topics()
    assert topic in topics, topics
    partitions = consumer.partitions_for_topic(topic)
    assert partitions == set(range(partition_count)), partitions
    consumer.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
