//! Consumer groups: the classic protocol and KIP-848, each group owned by one network core.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod reply;
pub mod topics;
