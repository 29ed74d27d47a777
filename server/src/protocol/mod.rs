//! The Kafka protocol layer, free of I/O: bytes in, bytes out.
//!
//! A connection hands each complete frame ([`frame::split_frame`]) to the [`Dispatcher`], which
//! decodes the header and body ([`codec`]), runs the handler for the API and returns the encoded
//! response, or tells the connection to close. Which APIs and versions exist is decided in one
//! place, [`apis::SUPPORTED_APIS`]: the decoder refuses what is not in it and the ApiVersions
//! handler advertises exactly it, so the two cannot disagree. Because nothing here touches a
//! socket, the whole request path is tested with plain byte vectors.
//!
//! What the Java broker does is the reference for edge cases: a request it cannot parse (unknown
//! API key, version outside the supported range, malformed header or body) closes the
//! connection; the one exception is an ApiVersions request of a version it does not know, which
//! gets an UNSUPPORTED_VERSION error in a version-0 response that lists the supported ranges, so
//! that a newer client can retry with a version both understand (KIP-511).

pub mod apis;
pub mod client_codec;
pub mod cluster_routing;
pub mod codec;
pub mod dispatch;
pub mod fetch_frame;
pub mod frame;
mod guard;
mod handlers;
pub use handlers::produce::{ProduceOrder, ProduceTurn};
pub mod services;
pub mod shape;

pub use dispatch::{BrokerIdentity, Dispatcher, FrameOutcome, SegmentsOutcome};
