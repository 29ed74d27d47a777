"""A real client over SASL/OAUTHBEARER: confluent-kafka (librdkafka) hands the agent the JWT in
TOKEN_FILE (through librdkafka's oauthbearer token refresh callback), produces COUNT records with
acks=all over SASL_PLAINTEXT, and a consumer in a group reads them back. Then a client with the
token in BAD_TOKEN_FILE must see librdkafka's authentication error carrying the agent's message
(SASL_AUTHENTICATION_FAILED).

usage: oauth_check.py BOOTSTRAP TOPIC COUNT TOKEN_FILE BAD_TOKEN_FILE
Prints "ok" on success."""
import sys
import time

from roundtrip import expect_authentication_failure, produce_and_read_back

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


failure = produce_and_read_back(security(token_file), topic, count, "oauth", "oauth-check")
if failure:
    sys.exit(f"with a valid token: {failure}")
failure = expect_authentication_failure(security(bad_token_file))
if failure:
    sys.exit(f"with a bad token: {failure}")
print("ok")
