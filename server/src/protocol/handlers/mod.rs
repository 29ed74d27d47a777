//! One handler per implemented API. Handlers build response values; encoding is the codec's job.

pub mod acls;
pub mod admin_tools;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod delete_records;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod quotas;
pub mod scram_credentials;
pub mod topics_admin;
