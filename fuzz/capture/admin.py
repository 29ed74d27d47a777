#!/usr/bin/env python3
"""The admin APIs through kafka-python's KafkaAdminClient, for the capture: admin.py BOOTSTRAP."""
import sys

from kafka import KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic

bootstrap = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fuzz-capture-admin")
admin.create_topics(
    [
        NewTopic("admin-a", 2, 1),
        NewTopic("admin-compacted", 1, 1, topic_configs={"cleanup.policy": "compact", "retention.ms": "60000"}),
    ]
)
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", key_serializer=str.encode)
for i in range(20):
    producer.send("admin-compacted", key="k%d" % (i % 4), value=None if i % 7 == 6 else b"v%d" % i)
    producer.send("admin-a", key="k%d" % i, value=b"x" * i)
producer.flush()
producer.close()
def attempt(name, call):
    """An API the agent may not serve (the legacy AlterConfigs) must not end the capture."""
    try:
        print(name, call())
    except Exception as error:  # noqa: BLE001 - any failure is only reported
        print(name, "failed:", repr(error))


attempt("describe topic configs", lambda: admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "admin-compacted")]))
attempt("describe broker configs", lambda: admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")]))
attempt("alter configs", lambda: admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "admin-a", configs={"retention.ms": "3600000"})]))
attempt("create partitions", lambda: admin.create_partitions({"admin-a": NewPartitions(4)}))
attempt("describe cluster", admin.describe_cluster)
attempt("list groups", admin.list_groups)
attempt("describe groups", lambda: admin.describe_groups(["group-java-classic", "group-librdkafka"]))
attempt("list group offsets", lambda: admin.list_group_offsets("group-java-classic"))
attempt("delete records", lambda: admin.delete_records({TopicPartition("admin-a", 0): 3}))
attempt("delete group offsets", lambda: admin.delete_group_offsets("group-java-classic", [TopicPartition("java-none", 0)]))
attempt("list offsets", lambda: admin.list_partition_offsets({TopicPartition("admin-a", 0): -2}))
attempt("describe topics", lambda: admin.describe_topics(["admin-a", "admin-compacted"]))
attempt("delete groups", lambda: admin.delete_groups(["group-librdkafka"]))
attempt("delete topics", lambda: admin.delete_topics(["admin-a"]))
admin.close()
