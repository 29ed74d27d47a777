//! From one frame to one response (or a decision to close the connection).
//!
//! A [`Dispatcher`] lives on one network core and is shared by that core's connections. It holds
//! the per-agent facts a response needs (who this broker is, the auto-creation policy) and the
//! services requests are forwarded to. It does no I/O itself: the services are traits and the
//! result is bytes, so it runs the same under a socket loop, a test or a simulator.
//!
//! A response is a list of byte segments ([`SegmentsOutcome`]) whose concatenation is the frame: a
//! Fetch response places its records as references into the block cache between its encoded
//! fields ([`super::fetch_frame`]), and the connection writes the list with vectored writes.
//! [`Dispatcher::handle_frame`] joins them into one buffer for callers that want one (tests, the
//! fuzzer, benches).

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::cluster_routing;
use super::codec::{self, DecodeError, Decoded, DecodedRequest, EncodeError, Request, Response};
use super::fetch_frame::encode_fetch_frame;
use super::guard;
use super::handlers::{
    acls, admin_tools, api_versions, cluster, configs, delete_records, fetch, find_coordinator,
    groups, init_producer_id, list_offsets, metadata, offsets, produce, quotas, scram_credentials,
    topics_admin,
};
use super::services::CoreServices;
use crate::auth::{Authorizer, ConnectionAuth, RequestAuth};
use crate::metadata_core::cluster_view::ClusterBoard;
use crate::metadata_source::{MetadataError, MetadataSource};
use crate::quota::{Applied, PollTimed, QuotaEnforcer, quota_user};
use sluice_engine::metadata::QuotaKey;
use sluice_engine::metadata::{AclOperation, AclResourceType};

/// How this agent appears in Metadata responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerIdentity {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

/// What the connection must do with a frame's result.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameOutcome {
    /// Write these bytes (a complete response frame, size prefix included).
    Respond(Bytes),
    /// The request wants no response (Produce with acks=0).
    NoResponse,
    /// Close the connection without answering.
    Close(CloseReason),
}

/// [`FrameOutcome`] with the response as segments, concatenated in order (none is empty).
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentsOutcome {
    Respond(Vec<Bytes>),
    NoResponse,
    Close(CloseReason),
}

/// Why a connection is closed instead of answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("metadata unavailable: {0}")]
    Metadata(String),
    #[error("{0:?} needs the engine, which this dispatcher does not have")]
    NoEngine(kafka_protocol::messages::ApiKey),
}

impl From<MetadataError> for CloseReason {
    fn from(error: MetadataError) -> Self {
        Self::Metadata(error.to_string())
    }
}

/// Decodes, handles and encodes requests for one network core.
#[derive(Debug, Clone)]
pub struct Dispatcher<S> {
    metadata: S,
    broker: BrokerIdentity,
    /// Partition count for auto-created topics; `None` when auto-creation is off.
    auto_create_partitions: Option<u32>,
    /// Produce and the admin APIs; `None` in protocol-only tests.
    services: Option<Rc<CoreServices>>,
    /// Partition count of a CreateTopics entry that asks for the default (-1).
    default_partitions: u32,
    /// ACL checks (`authorizer = "acl"`); `None`: no check runs and the ACL APIs answer
    /// SECURITY_DISABLED.
    authorizer: Option<Rc<Authorizer>>,
    /// The cluster's live agents (`--metadata`): Metadata and FindCoordinator name them, and
    /// group requests for a group another agent coordinates get NOT_COORDINATOR. `None`: one
    /// agent, which answers for everything.
    cluster: Option<Arc<ClusterBoard>>,
    /// Client quota enforcement (`crate::quota`); `None` in protocol-only tests.
    quotas: Option<Rc<QuotaEnforcer>>,
    /// The SCRAM logins' view of the stored credentials, refreshed after each
    /// AlterUserScramCredentials (`crate::net::sasl::credentials`).
    scram_credentials: Option<Arc<crate::net::sasl::ScramBoard>>,
    /// The listener this dispatcher's connections came in on (`CLIENT`): in a cluster, Metadata
    /// and FindCoordinator name the other agents by their address on the listener of that name.
    /// `None` in protocol-only tests: their one address.
    listener: Option<Arc<str>>,
}

/// The quotas one request is measured against (resolved once, before it is handled).
struct RequestQuotas<'a> {
    enforcer: &'a QuotaEnforcer,
    /// `request_percentage`: the core time spent on the request.
    request: Option<Applied>,
    /// `consumer_byte_rate` (Fetch; a Produce's bytes are recorded by `admit`).
    bytes: Option<Applied>,
}

impl<S: MetadataSource> Dispatcher<S> {
    pub fn new(metadata: S, broker: BrokerIdentity, auto_create_partitions: Option<u32>) -> Self {
        Self {
            metadata,
            broker,
            auto_create_partitions,
            services: None,
            default_partitions: auto_create_partitions.unwrap_or(1),
            authorizer: None,
            cluster: None,
            quotas: None,
            scram_credentials: None,
            listener: None,
        }
    }

    /// Publishes each SCRAM credential change to `board`, which SASL logins read.
    pub fn with_scram_credentials(mut self, board: Arc<crate::net::sasl::ScramBoard>) -> Self {
        self.scram_credentials = Some(board);
        self
    }

    /// Answers as an agent of a cluster when `board` is given (see [`super::cluster_routing`]).
    pub fn with_cluster(mut self, board: Option<Arc<ClusterBoard>>) -> Self {
        self.cluster = board;
        self
    }

    /// Names the listener its connections come in on (see the field).
    pub fn with_listener(mut self, name: &str) -> Self {
        self.listener = Some(Arc::from(name));
        self
    }

    /// Turns ACL checks on (see [`crate::auth`]).
    pub fn with_authorizer(mut self, authorizer: Rc<Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Turns client quota enforcement on (see [`crate::quota`]).
    pub fn with_quotas(mut self, quotas: Rc<QuotaEnforcer>) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// Adds the engine: Produce and the admin APIs become answerable.
    pub fn with_services(mut self, services: Rc<CoreServices>, default_partitions: u32) -> Self {
        self.services = Some(services);
        self.default_partitions = default_partitions;
        self
    }

    fn services(
        &self,
        api_key: kafka_protocol::messages::ApiKey,
    ) -> Result<&CoreServices, CloseReason> {
        self.services
            .as_deref()
            .ok_or(CloseReason::NoEngine(api_key))
    }

    /// The agent is stopping: this core's parked group requests are answered now (see
    /// [`crate::groups::GroupCore::release_parked_at_stop`]).
    pub fn release_parked_group_requests(&self) {
        if let Some(groups) = self
            .services
            .as_deref()
            .and_then(|services| services.groups.as_deref())
        {
            groups.local().release_parked_at_stop();
        }
    }

    fn groups(
        &self,
        api_key: kafka_protocol::messages::ApiKey,
    ) -> Result<&crate::groups::GroupRouter, CloseReason> {
        self.services(api_key)?
            .groups
            .as_deref()
            .ok_or(CloseReason::NoEngine(api_key))
    }

    /// Handles one frame (size prefix already removed) from a client whose address is unknown.
    pub async fn handle_frame(&self, frame: Bytes) -> FrameOutcome {
        self.handle_frame_from(frame, None).await
    }

    /// Handles one frame (size prefix already removed) from the client at `peer` (recorded as a
    /// group member's client host, as Kafka shows it in DescribeGroups). The response comes in one
    /// buffer: a Fetch response's records are copied into it (see [`Self::handle_frame_segments`]).
    /// The client is anonymous (before SASL, or in tests).
    pub async fn handle_frame_from(&self, frame: Bytes, peer: Option<IpAddr>) -> FrameOutcome {
        let connection = ConnectionAuth::anonymous(peer);
        match self.handle_frame_segments(frame, peer, &connection).await {
            SegmentsOutcome::Respond(segments) => {
                FrameOutcome::Respond(match segments.as_slice() {
                    [one] => one.clone(),
                    many => Bytes::from(many.concat()),
                })
            }
            SegmentsOutcome::NoResponse => FrameOutcome::NoResponse,
            SegmentsOutcome::Close(reason) => FrameOutcome::Close(reason),
        }
    }

    /// [`Self::handle_frame_from`] with the response as segments, for vectored writes: a Fetch
    /// response's records stay where the block cache holds them. `connection` says who the client
    /// is, for the authorizer.
    pub async fn handle_frame_segments(
        &self,
        frame: Bytes,
        peer: Option<IpAddr>,
        connection: &ConnectionAuth,
    ) -> SegmentsOutcome {
        self.handle_frame_throttled(frame, peer, connection, 0, None)
            .await
            .0
    }

    /// [`Self::handle_frame_segments`] and the throttle time in milliseconds a client quota asks
    /// for (0 within its quotas): the connection reads nothing more from the client for that long
    /// (KIP-219), whether or not a response is sent. `admitted_ms` is what [`Self::admit`] answered
    /// for this frame (its response carries at least that throttle). `turn`: a Produce frame's
    /// place in its connection's order ([`produce::ProduceOrder`]).
    pub async fn handle_frame_throttled(
        &self,
        frame: Bytes,
        peer: Option<IpAddr>,
        connection: &ConnectionAuth,
        admitted_ms: u64,
        turn: Option<produce::ProduceTurn>,
    ) -> (SegmentsOutcome, u64) {
        let mut throttle_ms = 0;
        let outcome = match self
            .try_handle_frame(frame, peer, connection, admitted_ms, &mut throttle_ms, turn)
            .await
        {
            Ok(Some(segments)) => SegmentsOutcome::Respond(segments),
            Ok(None) => SegmentsOutcome::NoResponse,
            Err(reason) => SegmentsOutcome::Close(reason),
        };
        (outcome, throttle_ms)
    }

    /// Records a Produce frame's bytes against its client's `producer_byte_rate` as the frame is
    /// read, before it is started, and answers the throttle (0 without a quota or within it).
    ///
    /// Kafka reads one request of a connection at a time, so a throttle always stops the next
    /// one. This connection pipelines (up to `REQUESTS_INFLIGHT_MAX`): measured only when a
    /// produce completes, a client with many requests in flight (librdkafka sends dozens) would
    /// have them all read and started before the first throttle. Measured here, the connection
    /// starts no further frame once one is over the quota. Synchronous: the quotas are the core's
    /// current snapshot (refreshed by the requests themselves).
    pub fn admit(&self, frame: &[u8], connection: &ConnectionAuth) -> u64 {
        const PRODUCE: i16 = 0;
        let Some(enforcer) = self.quotas.as_deref() else {
            return 0;
        };
        let Some((PRODUCE, client_id)) = peek_header(frame) else {
            return 0;
        };
        let quotas = enforcer.snapshot();
        if quotas.is_empty() {
            return 0;
        }
        let user = quota_user(connection.principal());
        match QuotaEnforcer::resolve(&quotas, QuotaKey::ProducerByteRate, user, client_id) {
            Some(applied) => enforcer.record(&applied, frame.len() as f64, enforcer.now_ms()),
            None => 0,
        }
    }

    /// The quotas a request from this connection is measured against; `None` when no quota
    /// applies (no enforcer, no stored quota, or an API Kafka exempts).
    async fn request_quotas(
        &self,
        api_key: kafka_protocol::messages::ApiKey,
        header: &kafka_protocol::messages::RequestHeader,
        connection: &ConnectionAuth,
    ) -> Option<RequestQuotas<'_>> {
        use kafka_protocol::messages::ApiKey;
        let enforcer = self.quotas.as_deref()?;
        // Kafka exempts the requests a client needs before it can honour a throttle.
        if matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            return None;
        }
        let quotas = enforcer.quotas().await;
        if quotas.is_empty() {
            return None;
        }
        let user = quota_user(connection.principal());
        let client_id = header.client_id.as_deref().unwrap_or("");
        // A Produce's bytes are recorded as its frame is read (`admit`).
        let bytes_key = match api_key {
            ApiKey::Fetch => Some(QuotaKey::ConsumerByteRate),
            _ => None,
        };
        let request = QuotaEnforcer::resolve(&quotas, QuotaKey::RequestPercentage, user, client_id);
        let bytes = bytes_key.and_then(|key| QuotaEnforcer::resolve(&quotas, key, user, client_id));
        (request.is_some() || bytes.is_some()).then_some(RequestQuotas {
            enforcer,
            request,
            bytes,
        })
    }

    async fn try_handle_frame(
        &self,
        frame: Bytes,
        peer: Option<IpAddr>,
        connection: &ConnectionAuth,
        admitted_ms: u64,
        throttle_ms: &mut u64,
        turn: Option<produce::ProduceTurn>,
    ) -> Result<Option<Vec<Bytes>>, CloseReason> {
        let request = match codec::decode_request(frame)? {
            Decoded::Request(request) => request,
            Decoded::UnsupportedApiVersions {
                correlation_id,
                version,
            } => {
                tracing::debug!(version, "ApiVersions request of an unsupported version");
                let response = Response::ApiVersions(api_versions::handle_unsupported_version());
                return Ok(Some(vec![codec::encode_response(
                    correlation_id,
                    kafka_protocol::messages::ApiKey::ApiVersions,
                    api_versions::UNSUPPORTED_RESPONSE_VERSION,
                    &response,
                )?]));
            }
        };
        let version = request.api_version();
        let DecodedRequest {
            header,
            api_key,
            body,
        } = request;
        let auth = RequestAuth {
            authorizer: self.authorizer.as_deref(),
            connection,
        };
        let quotas = self.request_quotas(api_key, &header, connection).await;
        let mut body = body;
        // Kafka caps a quota'd Fetch at what the quota allows in one window
        // (`getMaxValueInQuotaWindow`): a larger response would always be throttled, answered
        // empty and asked for again.
        if let (Some(quotas), Request::Fetch(fetch)) = (&quotas, &mut body)
            && let Some(applied) = &quotas.bytes
        {
            fetch.max_bytes = fetch
                .max_bytes
                .min(quotas.enforcer.bytes_in_window_max(applied));
        }
        let answered = async {
            let refused = if auth.enabled() {
                guard::refuse(&auth, &body, version).await
            } else {
                None
            };
            match (refused, body) {
                (Some(refused), _) => Ok(Some(Answered::Response(refused))),
                (None, body) => {
                    self.answer(body, api_key, version, &header, peer, auth, turn)
                        .await
                }
            }
        };
        if quotas.is_none() && admitted_ms == 0 {
            return match answered.await? {
                None => Ok(None),
                Some(Answered::Response(response)) => Ok(Some(vec![codec::encode_response(
                    header.correlation_id,
                    api_key,
                    version,
                    &response,
                )?])),
                Some(Answered::Fetch(answer)) => Ok(Some(encode_fetch_frame(
                    header.correlation_id,
                    version,
                    answer,
                )?)),
            };
        }
        // Measured: the core time the request took (its handler's polls, not its waits).
        let (response, spent) = match quotas.as_ref().and_then(|quotas| quotas.request.as_ref()) {
            Some(_) => PollTimed::new(std::pin::pin!(answered)).await,
            None => (answered.await, std::time::Duration::ZERO),
        };
        let response = response?;
        let mut throttle = admitted_ms;
        if let Some(quotas) = &quotas
            && let Some(applied) = &quotas.request
        {
            let enforcer = quotas.enforcer;
            let spent_ms = spent.as_secs_f64() * 1_000.0;
            throttle = throttle.max(enforcer.record(applied, spent_ms, enforcer.now_ms()));
        }
        let segments = match response {
            None => None,
            Some(Answered::Response(mut response)) => {
                if throttle > 0 {
                    response.set_throttle_time_ms(i32::try_from(throttle).unwrap_or(i32::MAX));
                }
                Some(vec![codec::encode_response(
                    header.correlation_id,
                    api_key,
                    version,
                    &response,
                )?])
            }
            Some(Answered::Fetch(answer)) => {
                let session_id = answer.session_id;
                let segments = encode_fetch_frame(header.correlation_id, version, answer)?;
                let response_bytes = segments.iter().map(Bytes::len).sum::<usize>() as f64;
                let fetch_quota = quotas.as_ref().and_then(|quotas| {
                    quotas
                        .bytes
                        .as_ref()
                        .map(|applied| (quotas.enforcer, applied))
                });
                if let Some((enforcer, applied)) = fetch_quota {
                    let now_ms = enforcer.now_ms();
                    throttle = throttle.max(enforcer.record(applied, response_bytes, now_ms));
                }
                if throttle == 0 {
                    Some(segments)
                } else {
                    // Kafka's throttled Fetch: the bytes are taken back and the response is
                    // empty (the session kept), so nothing is delivered past the quota.
                    if let Some((enforcer, applied)) = fetch_quota {
                        enforcer.unrecord(applied, response_bytes);
                    }
                    let empty = crate::protocol::fetch_frame::FetchAnswer {
                        throttle_time_ms: i32::try_from(throttle).unwrap_or(i32::MAX),
                        session_id,
                        ..Default::default()
                    };
                    Some(encode_fetch_frame(header.correlation_id, version, empty)?)
                }
            }
        };
        *throttle_ms = throttle;
        Ok(segments)
    }

    /// The answer of one decoded request: a response to encode, segments already encoded
    /// (Fetch), or `None` (no response is owed).
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's parts: its body, header, client and place in its connection"
    )]
    async fn answer(
        &self,
        body: Request,
        api_key: kafka_protocol::messages::ApiKey,
        version: i16,
        header: &kafka_protocol::messages::RequestHeader,
        peer: Option<IpAddr>,
        auth: RequestAuth<'_>,
        turn: Option<produce::ProduceTurn>,
    ) -> Result<Option<Answered>, CloseReason> {
        if let Some(board) = &self.cluster
            && let Some(refused) = cluster_routing::not_coordinator(&body, &board.view())
        {
            return Ok(Some(Answered::Response(refused)));
        }
        let response = match body {
            Request::CreateAcls(body) => Response::CreateAcls(
                acls::create_acls(&self.services(api_key)?.core, auth, &body).await,
            ),
            Request::DescribeAcls(body) => Response::DescribeAcls(
                acls::describe_acls(&self.services(api_key)?.core, auth, &body).await,
            ),
            Request::DeleteAcls(body) => Response::DeleteAcls(
                acls::delete_acls(&self.services(api_key)?.core, auth, &body).await,
            ),
            Request::DescribeClientQuotas(body) => Response::DescribeClientQuotas(
                quotas::describe_client_quotas(&self.services(api_key)?.core, auth, &body).await,
            ),
            Request::AlterClientQuotas(body) => Response::AlterClientQuotas(
                quotas::alter_client_quotas(
                    &self.services(api_key)?.core,
                    self.quotas.as_deref().map(QuotaEnforcer::board),
                    auth,
                    &body,
                )
                .await,
            ),
            Request::DescribeUserScramCredentials(body) => Response::DescribeUserScramCredentials(
                scram_credentials::describe_user_scram_credentials(
                    &self.services(api_key)?.core,
                    auth,
                    &body,
                )
                .await,
            ),
            Request::AlterUserScramCredentials(body) => Response::AlterUserScramCredentials(
                scram_credentials::alter_user_scram_credentials(
                    &self.services(api_key)?.core,
                    self.scram_credentials.as_deref(),
                    auth,
                    &body,
                )
                .await,
            ),
            Request::Produce(body) => {
                let (body, denied) = if auth.enabled() {
                    guard::produce(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                match produce::handle(self.services(api_key)?, body, turn).await {
                    Some(mut response) => {
                        response.responses.extend(denied);
                        Response::Produce(response)
                    }
                    None => return Ok(None),
                }
            }
            Request::CreateTopics(body) => {
                let services = self.services(api_key)?;
                let (body, denied) = if auth.enabled() {
                    guard::create_topics(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response =
                    topics_admin::create_topics(&services.core, body, self.default_partitions)
                        .await;
                response.topics.extend(denied);
                Response::CreateTopics(response)
            }
            Request::DeleteTopics(body) => {
                let core = &self.services(api_key)?.core;
                let (body, denied) = if auth.enabled() {
                    guard::delete_topics(&auth, core, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response = topics_admin::delete_topics(core, body, version).await;
                response.responses.extend(denied);
                Response::DeleteTopics(response)
            }
            Request::CreatePartitions(body) => {
                let (body, denied) = if auth.enabled() {
                    guard::create_partitions(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response =
                    topics_admin::create_partitions(&self.services(api_key)?.core, body).await;
                response.results.extend(denied.into_iter().map(|name| {
                    kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(name)
                        .with_error_code(guard::TOPIC_DENIED)
                        .with_error_message(guard::denied_message())
                }));
                Response::CreatePartitions(response)
            }
            Request::DeleteRecords(body) => {
                let (body, denied) = if auth.enabled() {
                    guard::delete_records(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response =
                    delete_records::handle(&self.services(api_key)?.core, &body).await;
                response.topics.extend(denied);
                Response::DeleteRecords(response)
            }
            Request::Fetch(body) => {
                let services = self.services(api_key)?;
                let mut answer = fetch::handle(services, *body, version).await;
                if auth.enabled() {
                    guard::fetch(&auth, &services.core, &mut answer).await;
                }
                return Ok(Some(Answered::Fetch(answer)));
            }
            Request::InitProducerId(body) => {
                let idempotent = body.transactional_id.is_none();
                if auth.enabled()
                    && idempotent
                    && !auth.allowed_on_cluster(AclOperation::IdempotentWrite).await
                    && !auth
                        .allowed_on_any(AclOperation::Write, AclResourceType::Topic)
                        .await
                {
                    Response::InitProducerId(
                        kafka_protocol::messages::InitProducerIdResponse::default()
                            .with_error_code(guard::CLUSTER_DENIED)
                            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                            .with_producer_epoch(-1),
                    )
                } else {
                    Response::InitProducerId(
                        init_producer_id::handle(&self.services(api_key)?.core, body).await,
                    )
                }
            }
            Request::ListOffsets(body) => {
                let (body, denied) = if auth.enabled() {
                    guard::list_offsets(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response =
                    list_offsets::handle(&self.services(api_key)?.core, body, version).await;
                response.topics.extend(denied);
                Response::ListOffsets(response)
            }
            Request::DescribeConfigs(body) => {
                let settings = configs::BrokerSettings {
                    identity: &self.broker,
                    auto_create_partitions: self.auto_create_partitions,
                    default_partitions: self.default_partitions,
                };
                let (body, denied) = if auth.enabled() {
                    guard::describe_configs(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response =
                    configs::describe_configs(&self.services(api_key)?.core, &body, &settings)
                        .await;
                response
                    .results
                    .extend(denied.into_iter().map(|(resource_type, name, code)| {
                        kafka_protocol::messages::describe_configs_response::DescribeConfigsResult::default()
                            .with_error_code(code)
                            .with_error_message(guard::denied_message())
                            .with_resource_type(resource_type)
                            .with_resource_name(name)
                    }));
                Response::DescribeConfigs(response)
            }
            Request::IncrementalAlterConfigs(body) => {
                let (body, denied) = if auth.enabled() {
                    guard::incremental_alter_configs(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response =
                    configs::incremental_alter_configs(&self.services(api_key)?.core, &body).await;
                response
                    .responses
                    .extend(denied.into_iter().map(|(resource_type, name, code)| {
                        kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(code)
                            .with_error_message(guard::denied_message())
                            .with_resource_type(resource_type)
                            .with_resource_name(name)
                    }));
                Response::IncrementalAlterConfigs(response)
            }
            Request::DescribeCluster(body) => {
                let mut response = cluster::describe_cluster(
                    &body,
                    version,
                    &self.metadata.cluster_id(),
                    &self.broker,
                );
                if let Some(board) = &self.cluster {
                    cluster_routing::route_describe_cluster(
                        &mut response,
                        &board.view(),
                        self.listener.as_deref(),
                    );
                }
                if auth.enabled() && body.include_cluster_authorized_operations {
                    response.cluster_authorized_operations = guard::cluster_operations(&auth).await;
                }
                Response::DescribeCluster(response)
            }
            Request::DescribeLogDirs(body) => Response::DescribeLogDirs(
                admin_tools::describe_log_dirs(&self.services(api_key)?.core, &body, version).await,
            ),
            Request::DescribeQuorum(body) => Response::DescribeQuorum(
                admin_tools::describe_quorum(
                    &self.services(api_key)?.core,
                    &body,
                    &self.broker,
                    version,
                    unix_now_ms(),
                )
                .await,
            ),
            Request::ElectLeaders(body) => Response::ElectLeaders(
                admin_tools::elect_leaders(&self.services(api_key)?.core, &body, version).await,
            ),
            Request::FindCoordinator(body) => {
                let (body, denied) = if auth.enabled() && version >= 4 {
                    guard::find_coordinator(&auth, body).await
                } else {
                    (body, Vec::new())
                };
                let mut response = find_coordinator::handle(&body, version, &self.broker);
                if let Some(board) = &self.cluster {
                    cluster_routing::route_find_coordinator(
                        &mut response,
                        body.key.as_str(),
                        &board.view(),
                        self.listener.as_deref(),
                    );
                }
                response.coordinators.extend(denied);
                Response::FindCoordinator(response)
            }
            Request::JoinGroup(body) => Response::JoinGroup(
                groups::join_group(self.groups(api_key)?, *body, version, client(header, peer))
                    .await,
            ),
            Request::SyncGroup(body) => {
                Response::SyncGroup(groups::sync_group(self.groups(api_key)?, *body, version).await)
            }
            Request::Heartbeat(body) => {
                Response::Heartbeat(groups::heartbeat(self.groups(api_key)?, *body, version).await)
            }
            Request::LeaveGroup(body) => Response::LeaveGroup(
                groups::leave_group(self.groups(api_key)?, *body, version).await,
            ),
            Request::OffsetCommit(body) => {
                let (body, denied) = if auth.enabled() {
                    guard::offset_commit(&auth, *body).await
                } else {
                    (*body, Vec::new())
                };
                let mut response =
                    offsets::offset_commit(self.groups(api_key)?, body, version).await;
                response.topics.extend(denied);
                Response::OffsetCommit(response)
            }
            Request::OffsetFetch(body) => {
                let (body, denied) = if auth.enabled() && version >= 8 {
                    guard::offset_fetch_groups(&auth, *body).await
                } else {
                    (*body, Vec::new())
                };
                let mut response =
                    offsets::offset_fetch(self.groups(api_key)?, body, version).await;
                response.groups.extend(denied);
                if auth.enabled() {
                    guard::offset_fetch_response(&auth, &mut response).await;
                }
                Response::OffsetFetch(response)
            }
            Request::OffsetDelete(body) => {
                Response::OffsetDelete(offsets::offset_delete(self.groups(api_key)?, body).await)
            }
            Request::DescribeGroups(mut body) => {
                let denied = if auth.enabled() {
                    let (allowed, denied) =
                        guard::split_groups(&auth, AclOperation::Describe, body.groups).await;
                    body.groups = allowed;
                    denied
                } else {
                    Vec::new()
                };
                let include_operations = body.include_authorized_operations;
                let mut response =
                    groups::describe_groups(self.groups(api_key)?, body, version).await;
                if auth.enabled() && include_operations {
                    for group in &mut response.groups {
                        group.authorized_operations =
                            guard::group_operations(&auth, group.group_id.as_str()).await;
                    }
                }
                response.groups.extend(denied.into_iter().map(|group| {
                    kafka_protocol::messages::describe_groups_response::DescribedGroup::default()
                        .with_group_id(group)
                        .with_error_code(guard::GROUP_DENIED)
                        .with_error_message(guard::denied_message())
                }));
                Response::DescribeGroups(response)
            }
            Request::ListGroups(body) => {
                let mut response = groups::list_groups(
                    self.groups(api_key)?,
                    &self.services(api_key)?.core,
                    &body,
                    version,
                )
                .await;
                if auth.enabled() {
                    guard::list_groups(&auth, &mut response).await;
                }
                Response::ListGroups(response)
            }
            Request::DeleteGroups(mut body) => {
                let denied = if auth.enabled() {
                    let (allowed, denied) =
                        guard::split_groups(&auth, AclOperation::Delete, body.groups_names).await;
                    body.groups_names = allowed;
                    denied
                } else {
                    Vec::new()
                };
                let mut response = groups::delete_groups(self.groups(api_key)?, body).await;
                response.results.extend(denied.into_iter().map(|group| {
                    kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default(
                    )
                    .with_group_id(group)
                    .with_error_code(guard::GROUP_DENIED)
                }));
                Response::DeleteGroups(response)
            }
            Request::ConsumerGroupHeartbeat(body) => Response::ConsumerGroupHeartbeat(
                groups::consumer_group_heartbeat(
                    self.groups(api_key)?,
                    *body,
                    version,
                    client(header, peer),
                )
                .await,
            ),
            Request::ConsumerGroupDescribe(mut body) => {
                let denied = if auth.enabled() {
                    let (allowed, denied) =
                        guard::split_groups(&auth, AclOperation::Describe, body.group_ids).await;
                    body.group_ids = allowed;
                    denied
                } else {
                    Vec::new()
                };
                let include_operations = body.include_authorized_operations;
                let mut response =
                    groups::consumer_group_describe(self.groups(api_key)?, body).await;
                if auth.enabled() && include_operations {
                    for group in &mut response.groups {
                        group.authorized_operations =
                            guard::group_operations(&auth, group.group_id.as_str()).await;
                    }
                }
                response.groups.extend(denied.into_iter().map(|group| {
                    kafka_protocol::messages::consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(group)
                        .with_error_code(guard::GROUP_DENIED)
                        .with_error_message(guard::denied_message())
                }));
                Response::ConsumerGroupDescribe(response)
            }
            // Kafka's answers (KafkaApis) on a listener without SASL, or after authentication:
            // SASL is the connection's business (net/sasl), never a request's.
            Request::SaslHandshake(_) => Response::SaslHandshake(
                kafka_protocol::messages::SaslHandshakeResponse::default()
                    .with_error_code(kafka_protocol::ResponseError::IllegalSaslState.code()),
            ),
            Request::SaslAuthenticate(_) => Response::SaslAuthenticate(
                kafka_protocol::messages::SaslAuthenticateResponse::default()
                    .with_error_code(kafka_protocol::ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(
                        "SaslAuthenticate request received after successful authentication".into(),
                    )),
            ),
            Request::ApiVersions(body) => {
                tracing::debug!(
                    client_id = ?header.client_id,
                    software = %body.client_software_name.as_str(),
                    software_version = %body.client_software_version.as_str(),
                    version,
                    "ApiVersions"
                );
                Response::ApiVersions(api_versions::handle(&body, version))
            }
            Request::Metadata(body) => {
                if auth.enabled() {
                    let plan =
                        guard::metadata_request(&auth, body, self.auto_create_partitions).await;
                    let mut response = metadata::handle(
                        &self.metadata,
                        &self.broker,
                        &plan.request,
                        version,
                        plan.auto_create_partitions,
                    )
                    .await?;
                    guard::metadata_response(&auth, &mut response, plan).await;
                    self.route_metadata(&mut response, header);
                    Response::Metadata(response)
                } else {
                    let mut response = metadata::handle(
                        &self.metadata,
                        &self.broker,
                        &body,
                        version,
                        self.auto_create_partitions,
                    )
                    .await?;
                    self.route_metadata(&mut response, header);
                    Response::Metadata(response)
                }
            }
        };
        Ok(Some(Answered::Response(response)))
    }
}

impl<S> Dispatcher<S> {
    /// In a cluster: the live agents as brokers, each partition's leader by rendezvous hashing.
    fn route_metadata(
        &self,
        response: &mut kafka_protocol::messages::MetadataResponse,
        header: &kafka_protocol::messages::RequestHeader,
    ) {
        if let Some(board) = &self.cluster {
            let client_id = header.client_id.as_deref().unwrap_or("");
            cluster_routing::route_metadata(
                response,
                &board.view(),
                client_id,
                self.listener.as_deref(),
            );
        }
    }
}

/// What [`Dispatcher::answer`] produced.
enum Answered {
    Response(Response),
    /// A Fetch response, encoded as segments once its quota is known.
    Fetch(crate::protocol::fetch_frame::FetchAnswer),
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The API key and client id of a request frame (size prefix removed), read without decoding:
/// every request header since v1 starts `api_key i16 | api_version i16 | correlation_id i32 |
/// client_id (i16 length, -1 for null)`. `None` if the frame is too short or the id not UTF-8.
fn peek_header(frame: &[u8]) -> Option<(i16, &str)> {
    let api_key = i16::from_be_bytes(*frame.first_chunk::<2>()?);
    let length = i16::from_be_bytes(*frame.get(8..)?.first_chunk::<2>()?);
    let client_id = match usize::try_from(length) {
        Ok(length) => std::str::from_utf8(frame.get(10..10 + length)?).ok()?,
        Err(_) => "",
    };
    Some((api_key, client_id))
}

/// The client as the group state machines record it. The host is written as the Java broker writes
/// it (`InetAddress.toString()` of an address without a name: `/127.0.0.1`), empty if unknown.
fn client(
    header: &kafka_protocol::messages::RequestHeader,
    peer: Option<IpAddr>,
) -> groups::Client {
    groups::Client {
        client_id: header
            .client_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        client_host: peer.map(|ip| format!("/{ip}")).unwrap_or_default(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use bytes::Buf;
    use futures::executor::block_on;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::metadata_source::InMemoryMetadataStub;
    use crate::protocol::client_codec::{decode_response, encode_request};

    fn dispatcher() -> Dispatcher<InMemoryMetadataStub> {
        let broker = BrokerIdentity {
            node_id: 0,
            host: "127.0.0.1".to_owned(),
            port: 9092,
        };
        Dispatcher::new(InMemoryMetadataStub::new("test-cluster"), broker, Some(2))
    }

    fn request<R: kafka_protocol::protocol::Encodable>(
        api_key: ApiKey,
        version: i16,
        body: &R,
    ) -> Bytes {
        let mut frame = encode_request(api_key, version, 1234, Some("t"), body).unwrap();
        frame.advance(4);
        frame
    }

    fn respond(dispatcher: &Dispatcher<InMemoryMetadataStub>, frame: Bytes) -> Bytes {
        match block_on(dispatcher.handle_frame(frame)) {
            FrameOutcome::Respond(bytes) => bytes,
            FrameOutcome::Close(reason) => panic!("closed: {reason}"),
            FrameOutcome::NoResponse => panic!("no response"),
        }
    }

    #[test]
    fn unsupported_api_versions_gets_error_35_in_a_v0_response() {
        let mut frame = request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).to_vec();
        frame[2..4].copy_from_slice(&7_i16.to_be_bytes());
        let bytes = respond(&dispatcher(), Bytes::from(frame));
        let (header, body): (_, ApiVersionsResponse) =
            decode_response(bytes, ApiKey::ApiVersions, 0).unwrap();
        assert_eq!(header.correlation_id, 1234);
        assert_eq!(body.error_code, 35);
        assert_eq!(
            body.api_keys.len(),
            crate::protocol::apis::SUPPORTED_APIS.len()
        );
    }

    #[test]
    fn metadata_auto_creates_with_the_configured_partition_count() {
        let dispatcher = dispatcher();
        let topics = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("events")))),
            ]))
            .with_allow_auto_topic_creation(true);
        let bytes = respond(&dispatcher, request(ApiKey::Metadata, 12, &topics));
        let (_, body): (_, MetadataResponse) =
            decode_response(bytes, ApiKey::Metadata, 12).unwrap();
        assert_eq!(body.topics[0].error_code, 0);
        assert_eq!(body.topics[0].partitions.len(), 2);
        // Now listed among all topics, at an old version too.
        let all = MetadataRequest::default().with_topics(Some(vec![]));
        let bytes = respond(&dispatcher, request(ApiKey::Metadata, 0, &all));
        let (_, body): (_, MetadataResponse) = decode_response(bytes, ApiKey::Metadata, 0).unwrap();
        assert_eq!(body.topics.len(), 1);
        assert_eq!(body.brokers[0].port, 9092);
    }

    /// One populated request of several group APIs, at old and new versions.
    fn group_frames() -> Vec<Bytes> {
        use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
        use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        use kafka_protocol::messages::offset_fetch_request::{
            OffsetFetchRequestGroup, OffsetFetchRequestTopics,
        };
        use kafka_protocol::messages::{
            ConsumerGroupHeartbeatRequest, FindCoordinatorRequest, GroupId, JoinGroupRequest,
            OffsetCommitRequest, OffsetFetchRequest,
        };
        let group = GroupId(StrBytes::from_static_str("group"));
        let commit = OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default().with_committed_offset(5),
                    ]),
            ]);
        let join = JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x01t")),
            ]);
        let fetch = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group.clone())
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ]);
        let heartbeat = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("t"))]))
            .with_topic_partitions(Some(vec![
                TopicPartitions::default().with_partitions(vec![0]),
            ]));
        let find = FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![StrBytes::from_static_str("group")]);
        vec![
            request(ApiKey::OffsetCommit, 2, &commit),
            request(ApiKey::OffsetCommit, 9, &commit),
            request(ApiKey::JoinGroup, 0, &join),
            request(ApiKey::JoinGroup, 9, &join),
            request(ApiKey::OffsetFetch, 9, &fetch),
            request(ApiKey::ConsumerGroupHeartbeat, 1, &heartbeat),
            request(ApiKey::FindCoordinator, 4, &find),
        ]
    }

    #[test]
    fn peek_header_reads_the_api_key_and_client_id_of_any_version() {
        use kafka_protocol::messages::ProduceRequest;
        for version in [3, 9, 12] {
            let frame = request(ApiKey::Produce, version, &ProduceRequest::default());
            assert_eq!(peek_header(&frame), Some((0, "t")), "v{version}");
        }
        let mut null_id = request(ApiKey::Metadata, 1, &MetadataRequest::default()).to_vec();
        null_id.truncate(8);
        null_id.extend_from_slice(&(-1_i16).to_be_bytes());
        assert_eq!(peek_header(&null_id), Some((3, "")));
        assert_eq!(peek_header(&null_id[..9]), None);
        let mut long = null_id.clone();
        long[8..10].copy_from_slice(&100_i16.to_be_bytes());
        assert_eq!(peek_header(&long), None);
    }

    #[test]
    fn find_coordinator_needs_no_engine() {
        use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
        let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
        let bytes = respond(&dispatcher(), request(ApiKey::FindCoordinator, 2, &find));
        let (_, body): (_, FindCoordinatorResponse) =
            decode_response(bytes, ApiKey::FindCoordinator, 2).unwrap();
        assert_eq!((body.error_code, body.port), (0, 9092));
    }

    #[test]
    fn random_and_mutated_frames_never_panic() {
        // Deterministic xorshift so a failure reproduces.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let dispatcher = dispatcher();
        let valid = [
            request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
            request(ApiKey::Metadata, 1, &MetadataRequest::default()),
            request(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            ),
        ];
        let groups = group_frames();
        for round in 0..20_000 {
            let frame: Vec<u8> = if round % 2 == 0 {
                let length = (next() % 64) as usize;
                (0..length).map(|_| next() as u8).collect()
            } else if round % 3 == 0 {
                // The group APIs' bodies (answered or refused, never a panic).
                let mut frame = groups[(next() as usize) % groups.len()].to_vec();
                for _ in 0..=(next() % 4) {
                    let position = 8 + (next() as usize) % (frame.len() - 8);
                    frame[position] = next() as u8;
                }
                frame
            } else {
                let mut frame = valid[(next() % 3) as usize].to_vec();
                for _ in 0..=(next() % 4) {
                    let position = (next() as usize) % frame.len();
                    frame[position] = next() as u8;
                }
                // Keep the api key and version valid half the time so the body decoders are hit.
                if round % 4 == 1 {
                    frame[0..4].copy_from_slice(&valid[2][0..4]);
                }
                frame
            };
            let _ = block_on(dispatcher.handle_frame(Bytes::from(frame)));
        }
    }
}
