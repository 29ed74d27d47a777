//! The crate's integration tests, one test binary (one link of the dependency tree instead of
//! one per file): each module is what was a file of its own under `tests/`.
//! Run one with `cargo test -p sluice-server --test integration -- <module>::`.

mod acl_enforcement;
mod acls;
mod admin;
mod api_versions;
mod bad_frames;
mod binary;
mod cluster_routing;
mod common;
mod compacted_topic;
mod configs;
mod delete_records;
mod fencing;
mod fetch_kafka_python;
mod fetch_live_edge;
mod fetch_measure;
mod fetch_read;
mod fetch_readahead;
mod fetch_sessions;
mod fetch_shared_cache;
mod fetch_support;
mod groups_protocol;
mod groups_restart;
mod idempotent_produce;
mod idempotent_rdkafka;
mod kafka_python;
mod listeners;
mod log_append_time;
mod metadata;
mod metrics;
mod oauthbearer;
mod panic_exit;
mod pipelined_order;
mod produce;
mod put_budget;
mod quotas;
mod retention;
mod s3_store;
mod sasl;
mod sasl_clients;
mod sasl_reauth;
mod scram_credentials;
mod shutdown;
mod store_faults;
mod tls;
