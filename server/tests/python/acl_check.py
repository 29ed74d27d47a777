"""ACLs seen from librdkafka (confluent-kafka): USER produces COUNT records to TOPIC over
SASL_PLAINTEXT with SCRAM-SHA-512 (acks=all).

usage: acl_check.py BOOTSTRAP USER PASSWORD TOPIC COUNT
Prints "ok" when every record was delivered, "denied" when every delivery failed with
TOPIC_AUTHORIZATION_FAILED, and anything else (with the errors) otherwise."""
import sys

from confluent_kafka import KafkaError, Producer

bootstrap, user, password, topic, count = sys.argv[1:5] + [int(sys.argv[5])]
errors = []
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 20000,
    }
)
for index in range(count):
    producer.produce(
        topic,
        value=f"acl-{index}".encode(),
        partition=0,
        on_delivery=lambda error, message: error and errors.append(error),
    )
left = producer.flush(30)
if left == 0 and not errors:
    print("ok")
elif left == 0 and len(errors) == count and all(
    error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for error in errors
):
    print("denied")
else:
    print(f"unexpected: {left} left, errors {errors[:3]}")
