//! Consumer groups: the classic protocol and KIP-848, each group owned by one network core.
//!
//! - `classic`, `consumer` (+ `assignor`, `topics`): the pure state machines, no I/O, time
//!   passed in.
//! - [`router`]: which core owns a group (`stable_hash(group_id) % cores`) and how a request
//!   reaches it from any core.
//! - [`core`]: one core's groups, timers and topic cache; `offsets` (next to it): the owner's
//!   side of OffsetCommit / OffsetFetch / OffsetDelete, durable through the metadata log;
//!   `persist`: the groups' own durable state (membership, generations, epochs, assignments),
//!   stored through the metadata log and resumed after a restart.
//! - `subscription`: the topics a classic `consumer` member subscribes to, for OffsetDelete.
//!
//! The protocol handlers (`protocol/handlers/groups.rs`, `offsets.rs`) route each request to the
//! owner and shape the answers by version. See `docs/agent.md`, "Consumer groups".

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod core;
pub mod offsets;
mod ownership;
mod persist;
pub mod reply;
pub mod router;
mod subscription;
pub mod topics;

pub use self::core::{GroupConfig, GroupCore, LoadError};
pub use self::persist::WRITE_RETRY_MS;
pub use self::router::{CoordinatorUnavailable, GroupRouter, group_channels, owner_core};
