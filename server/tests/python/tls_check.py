"""A real client over TLS: confluent-kafka (librdkafka) produces records with acks=all to the
agent's TLS listener, verifying the agent's certificate against the test CA (and presenting a
client certificate when given), then a consumer reads them back over TLS.

usage: tls_check.py BOOTSTRAP TOPIC COUNT CA_FILE [CLIENT_CERT CLIENT_KEY]
Prints "ok" on success."""
import sys
import time

from confluent_kafka import Consumer, Producer

bootstrap, topic, count, ca_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
security = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SSL",
    "ssl.ca.location": ca_file,
    "ssl.endpoint.identification.algorithm": "https",
}
if len(sys.argv) > 6:
    security["ssl.certificate.location"] = sys.argv[5]
    security["ssl.key.location"] = sys.argv[6]

errors = []
producer = Producer({**security, "acks": "all", "linger.ms": 5})
for index in range(count):
    producer.produce(
        topic,
        value=f"tls-{index}".encode(),
        partition=0,
        on_delivery=lambda error, message: error and errors.append(error),
    )
left = producer.flush(30)
if left or errors:
    sys.exit(f"not delivered: {left} left, errors {errors[:3]}")

consumer = Consumer(
    {**security, "group.id": "tls-check", "auto.offset.reset": "earliest", "enable.auto.commit": False}
)
consumer.subscribe([topic])
seen = []
deadline = time.monotonic() + 60
while len(seen) < count and time.monotonic() < deadline:
    message = consumer.poll(0.2)
    if message is None:
        continue
    if message.error():
        sys.exit(f"consumer error: {message.error()}")
    seen.append(message.value().decode())
consumer.close()
expected = [f"tls-{index}" for index in range(count)]
if seen != expected:
    sys.exit(f"read back {len(seen)} records, first differences: {[(a, b) for a, b in zip(seen, expected) if a != b][:3]}")
print("ok")
