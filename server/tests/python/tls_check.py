"""A real client over TLS: confluent-kafka (librdkafka) produces records with acks=all to the
agent's TLS listener, verifying the agent's certificate against the test CA (and presenting a
client certificate when given), then a consumer reads them back over TLS.

usage: tls_check.py BOOTSTRAP TOPIC COUNT CA_FILE [CLIENT_CERT CLIENT_KEY]
Prints "ok" on success."""
import sys

from roundtrip import produce_and_read_back

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

failure = produce_and_read_back(
    security, topic, count, "tls", "tls-check", client_errors_fail=False
)
if failure:
    sys.exit(failure)
print("ok")
