//! Consumer groups end to end: real clients' group members against a broker, checked from what the
//! members themselves report.
//!
//! Each member is a small program (`tests/clients/java/.../GroupMember.java`,
//! `tests/clients/python/rdkafka_group_member.py`, `tests/clients/go/group.go`) that subscribes in a
//! group, logs every record it processes, commits synchronously after each batch and logs every
//! rebalance callback with its whole assignment ([`events`]). The harness starts, stops (SIGTERM: a
//! clean leave) and kills (SIGKILL: a crash) members, and from their reports decides when the group
//! has settled and whether ownership was ever shared ([`ownership`]) and whether any committed record
//! was handed over twice or any record skipped ([`handoff`]). [`scenario`] holds the scenarios the
//! Apache Kafka and Sluice test files share; [`agent_kills`] the one only Sluice runs (the agent
//! killed under the group).
//!
//! The trade-off: the members are separate processes, so "at the same time" is judged on the
//! machine's wall clock, in microseconds, from lines each member writes before it acts on the
//! network. That ordering is causal for everything the checks compare (a revocation is logged before
//! the member rejoins, which is before anyone else is assigned the partition), so a correct broker
//! never trips them; what they cannot see is a commit whose log line a SIGKILL cut off, which only
//! hides a duplicate.

pub mod agent_kills;
pub mod cluster_failover;
pub mod events;
pub mod handoff;
pub mod member;
pub mod ownership;
pub mod scenario;
