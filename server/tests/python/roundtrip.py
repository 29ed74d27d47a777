"""What the security checks (tls_check.py, sasl_check.py, oauth_check.py) do alike with
confluent-kafka (librdkafka): produce records with acks=all and read them back in a group, and
see a client's authentication fail with the agent's message. Each function returns None on
success, else what went wrong."""
import time

from confluent_kafka import Consumer, KafkaError, Producer


def produce_and_read_back(settings, topic, count, prefix, group, client_errors_fail=True):
    """COUNT records "PREFIX-i" to partition 0 of TOPIC, then a consumer in GROUP reads them back
    from the beginning; every record must come back in order. With CLIENT_ERRORS_FAIL, an error
    the producer's client reported (its error_cb) fails the check too."""
    errors = []
    client_errors = []
    producer = Producer(
        {**settings, "acks": "all", "linger.ms": 5, "error_cb": client_errors.append}
    )
    for index in range(count):
        producer.produce(
            topic,
            value=f"{prefix}-{index}".encode(),
            partition=0,
            on_delivery=lambda error, message: error and errors.append(error),
        )
    left = producer.flush(30)
    if left or errors:
        return f"not delivered: {left} left, errors {errors[:3]}, client errors {client_errors[:3]}"

    consumer = Consumer(
        {
            **settings,
            "group.id": group,
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
            consumer.close()
            return f"consumer error: {message.error()}"
        seen.append(message.value().decode())
    consumer.close()
    expected = [f"{prefix}-{index}" for index in range(count)]
    if seen != expected:
        differences = [(a, b) for a, b in zip(seen, expected) if a != b][:3]
        return f"read back {len(seen)} of {count} records; first differences: {differences}"
    if client_errors_fail and client_errors:
        return f"client errors: {client_errors[:3]}"
    return None


def expect_authentication_failure(settings, timeout_s=30):
    """A producer with SETTINGS must see librdkafka's authentication error carrying the agent's
    SASL_AUTHENTICATION_FAILED message ("Authentication failed...")."""
    refused = []
    intruder = Producer({**settings, "error_cb": refused.append})
    deadline = time.monotonic() + timeout_s
    while not refused and time.monotonic() < deadline:
        intruder.poll(0.2)
    authentication = [e for e in refused if e.code() == KafkaError._AUTHENTICATION]
    if not authentication:
        return f"authentication did not fail: {refused[:3]}"
    text = authentication[0].str()
    if "Authentication failed" not in text:
        return f"the agent's message is missing from the client's error: {text}"
    return None
