"""A real client over SASL/OAUTHBEARER: confluent-kafka (librdkafka) hands the agent the JWT in
TOKEN_FILE (through librdkafka's oauthbearer token refresh callback), produces COUNT records with
acks=all over SASL_PLAINTEXT, and a consumer in a group reads them back. Then a client with the
token in BAD_TOKEN_FILE must see librdkafka's authentication error carrying the agent's message
(SASL_AUTHENTICATION_FAILED).

usage: oauth_check.py BOOTSTRAP TOPIC COUNT TOKEN_FILE BAD_TOKEN_FILE
Prints "ok" on success."""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
token_file, bad_token_file = sys.argv[4], sys.argv[5]


def security(path):
    token = open(path).read().strip()

    def refresh(_config):
        # (token, expiry in seconds since the epoch, principal, extensions)
        return token, time.time() + 600, "librdkafka", {}

    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": refresh,
    }


errors = []
client_errors = []
producer = Producer(
    {**security(token_file), "acks": "all", "linger.ms": 5, "error_cb": client_errors.append}
)
for index in range(count):
    producer.produce(
        topic,
        value=f"oauth-{index}".encode(),
        partition=0,
        on_delivery=lambda error, message: error and errors.append(error),
    )
left = producer.flush(30)
if left or errors:
    sys.exit(f"not delivered: {left} left, errors {errors[:3]}, client errors {client_errors[:3]}")

consumer = Consumer(
    {
        **security(token_file),
        "group.id": "oauth-check",
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
expected = [f"oauth-{index}" for index in range(count)]
if seen != expected:
    sys.exit(f"read back {len(seen)} of {count} records")
if client_errors:
    sys.exit(f"errors with a valid token: {client_errors[:3]}")

refused = []
intruder = Producer({**security(bad_token_file), "error_cb": refused.append})
deadline = time.monotonic() + 30
while not refused and time.monotonic() < deadline:
    intruder.poll(0.2)
authentication = [e for e in refused if e.code() == KafkaError._AUTHENTICATION]
if not authentication:
    sys.exit(f"a bad token did not fail authentication: {refused[:3]}")
text = authentication[0].str()
if "Authentication failed" not in text:
    sys.exit(f"the agent's message is missing from the client's error: {text}")
print("ok")
