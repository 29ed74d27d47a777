"""A real client over SASL: confluent-kafka (librdkafka) authenticates with MECHANISM (PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512) over SASL_PLAINTEXT or SASL_SSL, produces COUNT records with
acks=all, and a consumer (a group, so also FindCoordinator, JoinGroup, SyncGroup and OffsetFetch
after authentication) reads them back. With WRONG_PASSWORD_CHECK=1, a client with a wrong
password must then see librdkafka's authentication error carrying the agent's message
(SASL_AUTHENTICATION_FAILED); run it last, as its retries lock the address out.

usage: sasl_check.py BOOTSTRAP TOPIC COUNT PROTOCOL MECHANISM USER PASSWORD [CA_FILE [WRONG_PASSWORD_CHECK]]
Prints "ok" on success."""
import sys

from roundtrip import expect_authentication_failure, produce_and_read_back

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


failure = produce_and_read_back(
    security(password), topic, count, "sasl", f"sasl-check-{mechanism}"
)
if failure:
    sys.exit(failure)
if wrong_password_check:
    failure = expect_authentication_failure(security(password + "-wrong"))
    if failure:
        sys.exit(f"a wrong password: {failure}")
print("ok")
