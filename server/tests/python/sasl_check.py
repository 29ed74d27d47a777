"""A real client over SASL: confluent-kafka (librdkafka) authenticates with MECHANISM (PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512) over SASL_PLAINTEXT or SASL_SSL, produces COUNT records with
acks=all, and a consumer (a group, so also FindCoordinator, JoinGroup, SyncGroup and OffsetFetch
after authentication) reads them back. With WRONG_PASSWORD_CHECK=1, a client with a wrong
password must then see librdkafka's authentication error carrying the agent's message
(SASL_AUTHENTICATION_FAILED); run it last, as its retries lock the address out.

usage: sasl_check.py BOOTSTRAP TOPIC COUNT PROTOCOL MECHANISM USER PASSWORD [CA_FILE [WRONG_PASSWORD_CHECK]]
Prints "ok" on success."""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
protocol, mechanism, user, password = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
ca_file = sys.argv[8] if len(sys.argv) > 8 and sys.argv[8] else None
wrong_password_check = len(sys.argv) > 9 and sys.argv[9] == "1"


def security(password):
    settings = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if ca_file:
        settings["ssl.ca.location"] = ca_file
        settings["ssl.endpoint.identification.algorithm"] = "https"
    return settings


errors = []
client_errors = []
producer = Producer(
    {**security(password), "acks": "all", "linger.ms": 5, "error_cb": client_errors.append}
)
for index in range(count):
    producer.produce(
        topic,
        value=f"sasl-{index}".encode(),
        partition=0,
        on_delivery=lambda error, message: error and errors.append(error),
    )
left = producer.flush(30)
if left or errors:
    sys.exit(f"not delivered: {left} left, errors {errors[:3]}, client errors {client_errors[:3]}")

consumer = Consumer(
    {
        **security(password),
        "group.id": f"sasl-check-{mechanism}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
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
expected = [f"sasl-{index}" for index in range(count)]
if seen != expected:
    sys.exit(f"read back {len(seen)} of {count} records; first differences: {[(a, b) for a, b in zip(seen, expected) if a != b][:3]}")
if client_errors:
    sys.exit(f"errors with the right password: {client_errors[:3]}")

if wrong_password_check:
    refused = []
    intruder = Producer({**security(password + "-wrong"), "error_cb": refused.append})
    deadline = time.monotonic() + 30
    while not refused and time.monotonic() < deadline:
        intruder.poll(0.2)
    authentication = [e for e in refused if e.code() == KafkaError._AUTHENTICATION]
    if not authentication:
        sys.exit(f"a wrong password did not fail authentication: {refused[:3]}")
    text = authentication[0].str()
    if "Authentication failed" not in text:
        sys.exit(f"the agent's message is missing from the client's error: {text}")
print("ok")
