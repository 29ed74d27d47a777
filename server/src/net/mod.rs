//! The I/O shell: executors, listeners and the per-connection loop.
//!
//! Thread-per-core: each configured CPU runs one glommio executor that binds its own
//! `SO_REUSEPORT` listener, so the kernel spreads new connections across cores and a connection
//! never moves between them; nothing on the request path is shared across threads. A separate
//! metadata executor (which may share a CPU on small machines) runs the engine's metadata core
//! ([`crate::metadata_core`]). Everything protocol-shaped is delegated to [`crate::protocol`]; this module
//! only moves bytes and decides when to close.

pub mod agent;
mod cluster;
pub mod connection;
mod executor;
pub mod listener;
mod network_core;
mod request_order;
pub mod sasl;
pub mod tls;
mod vectored;
