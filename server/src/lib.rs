//! The Sluice agent: the Kafka protocol server in front of the engine.
//!
//! The crate is split along one line: everything that can be a pure function of bytes is (the
//! [`protocol`] module decodes frames, dispatches and encodes responses without touching a
//! socket), and the I/O shell around it ([`net`]) is kept thin: one glommio executor per
//! configured CPU, each with its own `SO_REUSEPORT` listener, owning its connections from accept
//! to close. The engine lives behind one more executor, the metadata core
//! ([`metadata_core`]): it owns the metadata log, assigns offsets and flushes one object per
//! window for the whole agent; network cores reach it only by messages. `docs/agent.md` describes
//! the threads and how a produce flows through them.

pub mod auth;
pub mod cli;
pub mod config;
pub mod dump;
pub mod fetch;
pub mod groups;
#[cfg(test)]
mod kafka_code_tests;
pub mod lifecycle;
pub mod memlock;
pub mod memory;
pub mod metadata_core;
pub mod metadata_source;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod quota;
pub mod signals;

pub use config::Config;
pub use net::agent::{Agent, AgentError};
