//! Shared helpers for the agent tests: an in-process agent on an ephemeral port and a raw
//! Kafka client built from `kafka-protocol` over a blocking `std` socket.
//!
//! Locked memory: the agent's glommio executors charge their io memory to RLIMIT_MEMLOCK (8 MiB
//! on the development machines). An in-process test agent runs one network core plus the
//! metadata core, two executors, and [`start_agent`] holds a process-wide mutex for the agent's
//! lifetime, so tests in one file never run two agents at once even under the default parallel
//! test runner (`--test-threads=1` is therefore not required). glommio 0.9 does not release an
//! executor's registered memory when it stops (see `shutdown.rs`), so after a few agents in one
//! test process glommio falls back to unregistered buffers; that changes speed, not behaviour.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_server::metadata_source::InMemoryMetadataStub;
use sluice_server::protocol::client_codec::{decode_response, encode_request};
use sluice_server::{Agent, Config};

static ONE_AGENT_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running in-process agent; stops when dropped.
pub struct TestAgent {
    pub agent: Option<Agent>,
    pub metadata: InMemoryMetadataStub,
    _serialised: MutexGuard<'static, ()>,
}

impl TestAgent {
    pub fn addr(&self) -> SocketAddr {
        self.agent.as_ref().unwrap().local_addr()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().unwrap();
        }
    }
}

/// Starts an agent with one network core on CPU 0 and an ephemeral port.
pub fn start_agent(configure: impl FnOnce(&mut Config)) -> TestAgent {
    let serialised = ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut config = Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        ..Config::default()
    };
    configure(&mut config);
    let metadata = InMemoryMetadataStub::new("test-cluster");
    let agent = Agent::start(&config, metadata.clone()).unwrap();
    TestAgent {
        agent: Some(agent),
        metadata,
        _serialised: serialised,
    }
}

/// A blocking client connection speaking raw Kafka frames.
pub struct RawClient {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

/// What came back for a request.
#[derive(Debug)]
pub enum Reply {
    Frame(Bytes),
    Closed,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            stream,
            next_correlation_id: 1,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame (size prefix included), or reports that the agent closed.
    pub fn read_reply(&mut self) -> Reply {
        let mut prefix = [0_u8; 4];
        match self.stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return Reply::Closed;
            }
            Err(error) => panic!("reading a reply: {error}"),
        }
        let size = i32::from_be_bytes(prefix) as usize;
        let mut frame = vec![0_u8; 4 + size];
        frame[..4].copy_from_slice(&prefix);
        self.stream.read_exact(&mut frame[4..]).unwrap();
        Reply::Frame(Bytes::from(frame))
    }

    /// Sends a request; returns the correlation id used.
    pub fn send<R: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &R) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = encode_request(
            api_key,
            version,
            correlation_id,
            Some("raw-test-client"),
            body,
        )
        .unwrap();
        self.send_raw(&frame);
        correlation_id
    }

    /// Sends a request and decodes its response, checking the correlation id.
    pub fn call<R: Encodable, P: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &R,
    ) -> P {
        let correlation_id = self.send(api_key, version, body);
        self.receive(api_key, version, correlation_id)
    }

    pub fn receive<P: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> P {
        let Reply::Frame(frame) = self.read_reply() else {
            panic!("agent closed the connection")
        };
        let (header, body): (ResponseHeader, P) = decode_response(frame, api_key, version).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        body
    }

    /// True when the agent has closed this connection (EOF within the read timeout).
    pub fn is_closed_by_agent(&mut self) -> bool {
        matches!(self.read_reply(), Reply::Closed)
    }
}
