"""A real client through one named listener: confluent-kafka (librdkafka) bootstraps from
BOOTSTRAP with the client settings given as KEY=VALUE (security.protocol, ssl.*, sasl.*),
produces COUNT records with acks=all to TOPIC and a consumer group reads them back. The client
connects to whatever address Metadata names, so a listener that answered with another
listener's address (another protocol) fails here.

usage: listeners_check.py BOOTSTRAP TOPIC COUNT [KEY=VALUE ...]
Prints "ok" on success."""
import sys

from roundtrip import produce_and_read_back

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = {"bootstrap.servers": bootstrap}
for pair in sys.argv[4:]:
    key, value = pair.split("=", 1)
    settings[key] = value

failure = produce_and_read_back(
    settings, topic, count, "listeners", f"listeners-check-{topic}", client_errors_fail=False
)
if failure:
    sys.exit(failure)
print("ok")
