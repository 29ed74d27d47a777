//! One handler per implemented API. Handlers build response values; encoding is the codec's job.

pub mod api_versions;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics_admin;
