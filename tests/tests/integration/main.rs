//! The crate's integration tests, one test binary (one link of the dependency tree instead of
//! one per file): each module is what was a file of its own under `tests/`.
//! Run one with `cargo test -p sluice-tests --test integration -- <module>::`.

mod acls_kafka;
mod acls_sluice;
mod admin_tools_sluice;
mod client_matrix_kafka;
mod client_matrix_sluice;
mod cluster_clients_sluice;
mod cluster_gc_sluice;
mod cluster_groups_sluice;
mod cluster_postgres_stop_sluice;
mod cluster_rolling_restart_sluice;
mod cluster_sluice;
mod cluster_truncation_sluice;
mod compacted_topic_kafka;
mod compacted_topic_sluice;
mod compaction_sluice;
mod delete_records_sluice;
mod groups_kafka;
mod groups_kill9_sluice;
mod groups_sluice;
mod log_append_time_sluice;
mod quotas_kafka;
mod quotas_sluice;
mod scram_credentials_kafka;
mod scram_credentials_sluice;
mod sluice_kill9;
mod store_round_trip_sluice;
mod streams_kafka;
mod streams_sluice;
