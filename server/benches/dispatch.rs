//! The request path without sockets: frame in, response frame out, on one core.
//!
//! `cargo bench -p sluice-server --bench dispatch`
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use bytes::{Buf, Bytes};
use criterion::{Criterion, criterion_group, criterion_main};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_server::metadata_source::InMemoryMetadataStub;
use sluice_server::protocol::client_codec::encode_request;
use sluice_server::protocol::{BrokerIdentity, Dispatcher, FrameOutcome};

fn frame<R: kafka_protocol::protocol::Encodable>(api_key: ApiKey, version: i16, body: &R) -> Bytes {
    let mut frame = encode_request(api_key, version, 1, Some("bench"), body).unwrap();
    frame.advance(4);
    frame
}

fn dispatch(criterion: &mut Criterion) {
    let stub = InMemoryMetadataStub::new("bench");
    for index in 0..10 {
        stub.create_topic(&format!("topic-{index}"), 8).unwrap();
    }
    let broker = BrokerIdentity {
        node_id: 0,
        host: "127.0.0.1".to_owned(),
        port: 9092,
    };
    let dispatcher = Dispatcher::new(stub, broker, Some(1));
    let api_versions = frame(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("bench"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    );
    let metadata = frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let run = |request: &Bytes| {
        let outcome = futures::executor::block_on(dispatcher.handle_frame(request.clone()));
        assert!(matches!(outcome, FrameOutcome::Respond(_)));
        outcome
    };
    criterion.bench_function("api_versions_v3", |bencher| {
        bencher.iter(|| run(&api_versions))
    });
    criterion.bench_function("metadata_v12_all_10_topics_x_8_partitions", |bencher| {
        bencher.iter(|| run(&metadata))
    });
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
