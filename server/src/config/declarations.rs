//! Every setting of the agent, declared once: its TOML key, type and default, the unit or shape
//! its flag and variable take, a line of help and its documentation (which `docs/configuration.md`
//! shows). Everything else — the serde struct, the flags, the `SLUICE_*` variables, the layering,
//! the reference table — is generated from this list by [`settings!`](super::settings).
//!
//! Checks that involve one setting's range or several settings live in `Config::validate`
//! (`config/mod.rs`), which names the key at fault.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::settings::settings;
use super::{
    ConfigError, GROUP_MAX_SIZE_DEFAULT, ListenerSettings, REQUEST_BYTES_MAX_DEFAULT,
    SASL_MECHANISMS_DEFAULT, listeners,
};

settings! {
    /// Named Kafka listeners, Kafka's `listeners`: `NAME://HOST:PORT` each (an empty host is
    /// `0.0.0.0`), a TOML list or one comma-separated string. Every network core accepts on
    /// every listener. Names are 1–32 letters, digits or `_`, compared upper-cased; at most 8
    /// listeners; two listeners may not share a port (except port 0). Replaces `listen`,
    /// `advertised_listen`, `tls_listen`, `tls_advertised_listen`, `listen_sasl` and
    /// `tls_listen_sasl`: setting any of them too stops the start (`listen` must stay at its
    /// default). See [operations.md](operations.md#listeners).
    #[setting(
        value = "LIST",
        help = "Named Kafka listeners, NAME://HOST:PORT,...",
        default = "empty (`listen` and `tls_listen` decide)"
    )]
    #[serde(deserialize_with = "listeners::string_or_list")]
    listeners: Vec<String> = Vec::new(),
    /// Kafka's `advertised.listeners`: `NAME://HOST:PORT` for the listeners whose clients must
    /// be told another address than the one bound. Metadata (and FindCoordinator) answer with
    /// the address of the listener the request came in on. A name not in `listeners` stops the
    /// start, and so does a wildcard host that is not advertised. Port 0 means the port bound.
    /// Only with `listeners`.
    #[setting(
        value = "LIST",
        help = "Addresses advertised per listener, NAME://HOST:PORT,...",
        default = "each listener's bound address"
    )]
    #[serde(deserialize_with = "listeners::string_or_list")]
    advertised_listeners: Vec<String> = Vec::new(),
    /// Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL` for each listener (a TOML list
    /// or one comma-separated string). A listener whose name is neither mapped nor a protocol
    /// stops the start. SSL and SASL_SSL listeners use `tls_cert_file`/`tls_key_file`
    /// (required); SASL listeners use `sasl_mechanisms` (or their own
    /// `sasl_enabled_mechanisms`), `sasl_users_file` and the other `sasl_*` settings — those
    /// are agent-wide and apply to every listener of that protocol. Only with `listeners`.
    #[setting(
        value = "LIST",
        help = "Security protocol of each listener, NAME:PROTOCOL,...",
        default = "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` map to themselves"
    )]
    #[serde(deserialize_with = "listeners::string_or_list")]
    listener_security_protocol_map: Vec<String> = Vec::new(),
    /// Address every network core binds (with `SO_REUSEPORT`, so all cores share it). Port 0
    /// picks a free port once; the agent prints the chosen address (`sluice: listening on
    /// ...`). A shorthand for `listeners = "PLAINTEXT://HOST:PORT"` (`SASL_PLAINTEXT://…` with
    /// `listen_sasl`).
    #[setting(value = "HOST:PORT", help = "Listener address, HOST:PORT")]
    listen: String = listeners::LISTEN_DEFAULT.to_owned(),
    /// Address given to clients in Metadata responses (Kafka's `advertised.listeners`).
    /// Required when `listen` is a wildcard such as `0.0.0.0:9092`. Port 0 means the port
    /// actually bound.
    #[setting(
        value = "HOST:PORT",
        help = "Address advertised to clients, HOST:PORT",
        default = "`listen`"
    )]
    advertised_listen: Option<String> = None,
    /// Address of the HTTP endpoint serving `/metrics` (Prometheus), `/livez` and `/readyz`, on
    /// a thread of its own ([operations.md](operations.md)). Port 0 picks a free port. A port
    /// that cannot be bound stops the start.
    #[setting(
        value = "HOST:PORT",
        help = "Metrics and health endpoint, HOST:PORT",
        default = "none (no endpoint)"
    )]
    metrics_listen: Option<String> = None,
    /// A second Kafka listener, speaking TLS 1.2/1.3 (Kafka's `SSL` security protocol), on
    /// every network core like `listen`: a shorthand for a listener named `SSL` (`SASL_SSL`
    /// with `tls_listen_sasl`). Needs `tls_cert_file` and `tls_key_file`; see
    /// [operations.md](operations.md#tls).
    #[setting(
        value = "HOST:PORT",
        help = "TLS listener address, HOST:PORT",
        default = "none (no TLS listener)"
    )]
    tls_listen: Option<String> = None,
    /// Address given in Metadata responses to clients connected over TLS (its host should be a
    /// name the certificate holds). Port 0 means the TLS port actually bound.
    #[setting(
        value = "HOST:PORT",
        help = "Address advertised to TLS clients, HOST:PORT",
        default = "`tls_listen`"
    )]
    tls_advertised_listen: Option<String> = None,
    /// PEM certificate chain, leaf first. Reloaded without a restart when the file changes.
    #[setting(value = "FILE", help = "TLS certificate chain, PEM")]
    tls_cert_file: Option<PathBuf> = None,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    #[setting(value = "FILE", help = "TLS private key, PEM")]
    tls_key_file: Option<PathBuf> = None,
    /// PEM CA certificates; when set, every TLS client must present a certificate chained to
    /// one of them (mTLS).
    #[setting(
        value = "FILE",
        help = "CA certificates clients' certificates must chain to (mTLS), PEM",
        default = "none (no client certificates)"
    )]
    tls_client_ca_file: Option<PathBuf> = None,
    /// The plaintext listener requires SASL authentication (Kafka's `SASL_PLAINTEXT`). Needs
    /// `sasl_users_file`; see [operations.md](operations.md#sasl). PLAIN over it sends
    /// passwords in clear.
    #[setting(value = "BOOL", help = "The plaintext listener requires SASL (SASL_PLAINTEXT)")]
    listen_sasl: bool = false,
    /// The TLS listener requires SASL authentication (Kafka's `SASL_SSL`). Needs `tls_listen`
    /// and `sasl_users_file`.
    #[setting(value = "BOOL", help = "The TLS listener requires SASL (SASL_SSL)")]
    tls_listen_sasl: bool = false,
    /// Mechanisms offered to clients (Kafka's `sasl.enabled.mechanisms`), in this order in the
    /// SaslHandshake answer; `OAUTHBEARER` too when named (it needs
    /// `sasl_oauthbearer_jwks_file` or `sasl_oauthbearer_jwks_endpoint_url`). TOML takes a list; env and flag take
    /// `SCRAM-SHA-512,PLAIN`. An unknown name stops the start.
    #[setting(value = "LIST", help = "SASL mechanisms offered, e.g. SCRAM-SHA-512,PLAIN")]
    sasl_mechanisms: Vec<String> = SASL_MECHANISMS_DEFAULT
        .iter()
        .map(|name| (*name).to_owned())
        .collect(),
    /// TOML file of users and passwords (`[users]` then `alice = "secret"` lines), read at
    /// start; SCRAM credentials are derived from it with a random salt and 4096 iterations.
    /// SCRAM credentials managed with `kafka-configs` live in the metadata log and win over the
    /// file's for the same user and mechanism
    /// ([operations.md](operations.md#scram-credentials-in-the-metadata-log)). Required when a
    /// listener requires SASL with PLAIN or SCRAM, refused when none does. Never logged.
    #[setting(value = "FILE", help = "TOML file of SASL users and passwords")]
    sasl_users_file: Option<PathBuf> = None,
    /// Failed SASL logins from one client address within `sasl_failed_logins_window_ms` that
    /// lock the address out for `sasl_lockout_ms` (its logins then fail unchecked). 0 turns the
    /// lockout off. See [operations.md](operations.md#sasl).
    #[setting(
        value = "COUNT",
        help = "Failed SASL logins from one address that lock it out; 0 = off"
    )]
    sasl_failed_logins_max: u32 = crate::net::sasl::limiter::FAILED_LOGINS_MAX,
    /// The window failed SASL logins are counted over.
    #[setting(value = "MS", help = "Window failed SASL logins are counted over")]
    sasl_failed_logins_window_ms: u64 = crate::net::sasl::limiter::FAILED_LOGINS_WINDOW_MS,
    /// How long a locked-out address is refused.
    #[setting(value = "MS", help = "How long a locked-out address is refused")]
    sasl_lockout_ms: u64 = crate::net::sasl::limiter::LOCKOUT_MS,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): when above 0, a SASL session lasts at
    /// most this long (less when an OAUTHBEARER token expires sooner) and the client must
    /// re-authenticate on its connection before then; a request after the session expired
    /// closes the connection. 0 turns re-authentication off. See
    /// [operations.md](operations.md#re-authentication).
    #[setting(
        value = "MS",
        help = "Longest a SASL session lasts before re-authentication; 0 = off"
    )]
    connections_max_reauth_ms: u64 = 0,
    /// JSON Web Key Set whose keys sign OAUTHBEARER tokens (Kafka's
    /// `sasl.oauthbearer.jwks.endpoint.url`, as a file), read at start. When `sasl_mechanisms`
    /// offers OAUTHBEARER, exactly one of this and `sasl_oauthbearer_jwks_endpoint_url` is
    /// required; both are refused otherwise. See [operations.md](operations.md#oauthbearer).
    #[setting(value = "FILE", help = "JWKS file whose keys sign OAUTHBEARER tokens")]
    sasl_oauthbearer_jwks_file: Option<PathBuf> = None,
    /// Kafka's `sasl.oauthbearer.jwks.endpoint.url`: the identity provider's JWKS endpoint,
    /// `https://` (or `http://` to a loopback address only). Fetched at start (a failure stops the
    /// start), every `sasl_oauthbearer_jwks_endpoint_refresh_ms`, and early (at most once per
    /// backoff, 100 ms doubling to 10 s by default) when a token names a `kid` the keys lack. See
    /// [operations.md](operations.md#oauthbearer).
    #[setting(value = "URL", help = "JWKS endpoint whose keys sign OAUTHBEARER tokens")]
    sasl_oauthbearer_jwks_endpoint_url: Option<String> = None,
    /// Kafka's `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often the JWKS endpoint is
    /// fetched again (at least 1,000). A failed refresh keeps the keys in use.
    #[setting(value = "MS", help = "How often the OAUTHBEARER JWKS endpoint is fetched again")]
    sasl_oauthbearer_jwks_endpoint_refresh_ms: u64 =
        crate::net::sasl::jwks_endpoint::REFRESH_MS_DEFAULT,
    /// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`: the least time between an early
    /// fetch of the JWKS endpoint (a token named an unknown `kid`, or a refresh failed) and the
    /// fetch before it (at least 1). Each early fetch that changes nothing doubles it.
    #[setting(value = "MS", help = "Least time between early JWKS endpoint fetches")]
    sasl_oauthbearer_jwks_endpoint_retry_backoff_ms: u64 =
        crate::net::sasl::jwks_endpoint::REFETCH_BACKOFF_MS_MIN,
    /// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms`: what that time doubles up
    /// to (at least `sasl_oauthbearer_jwks_endpoint_retry_backoff_ms`).
    #[setting(value = "MS", help = "Most time between early JWKS endpoint fetches")]
    sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms: u64 =
        crate::net::sasl::jwks_endpoint::REFETCH_BACKOFF_MS_MAX,
    /// CA certificates (PEM) the `https://` JWKS endpoint's certificate must chain to, instead of
    /// the platform's trusted roots (an identity provider with a private CA). Read at start; only
    /// with an `https://` `sasl_oauthbearer_jwks_endpoint_url`.
    #[setting(
        value = "FILE",
        help = "CA certificates the JWKS endpoint's certificate must chain to, PEM",
        default = "the platform's trusted roots"
    )]
    sasl_oauthbearer_jwks_endpoint_ca_file: Option<PathBuf> = None,
    /// The `iss` tokens must carry; none checks none.
    #[setting(value = "ISSUER", help = "The `iss` OAUTHBEARER tokens must carry")]
    sasl_oauthbearer_expected_issuer: Option<String> = None,
    /// Audiences, one of which a token's `aud` must hold; empty checks none.
    #[setting(value = "LIST", help = "Audiences, one of which OAUTHBEARER tokens must carry")]
    sasl_oauthbearer_expected_audience: Vec<String> = Vec::new(),
    /// The claim whose value is the principal's name (`User:NAME`).
    #[setting(value = "NAME", help = "The token claim naming the principal")]
    sasl_oauthbearer_sub_claim_name: String = crate::net::sasl::oauthbearer::SUB_CLAIM_DEFAULT
        .to_owned(),
    /// Leeway on a token's `exp` and `nbf`.
    #[setting(value = "SECONDS", help = "Leeway on a token's exp and nbf")]
    sasl_oauthbearer_clock_skew_seconds: u64 =
        crate::net::sasl::oauthbearer::CLOCK_SKEW_SECONDS_DEFAULT,
    /// Directory for the agent's local files, and for the default local object store.
    #[setting(value = "DIR", help = "Directory for the agent's local files")]
    data_dir: PathBuf = PathBuf::from("./sluice-data"),
    /// Object store holding all data and metadata: `s3://bucket/prefix?endpoint=…&region=…`
    /// (parameters in `engine/src/store/config.rs`), `file:///abs/dir` (`?fsync=false` for
    /// tests only), a plain path, or `memory://` (lost on exit). The agent recovers the
    /// metadata log from it at startup and claims it (an agent still writing to it is fenced);
    /// if it cannot, `sluice serve` exits with code 1 and says why.
    #[setting(
        value = "URL",
        help = "Object store URL",
        default = "`data_dir/store` (local directory)",
        secret = true
    )]
    store: Option<String> = None,
    /// CPU ids that each run one network executor (glommio, pinned). TOML takes a list (`[0,
    /// 2]`); env and flag take `0,2,4-7`. Each id must be online.
    #[setting(
        value = "LIST",
        help = "CPU ids for network executors, e.g. 0,2-3",
        default = "every online CPU"
    )]
    cpus: Option<Vec<usize>> = None,
    /// CPU the metadata executor is pinned to. May be one of `cpus` (it then shares that CPU,
    /// as it must on a 2-CPU machine).
    #[setting(
        value = "CPU",
        help = "CPU id for the metadata executor",
        default = "first of `cpus`"
    )]
    metadata_cpu: Option<usize> = None,
    /// Per network core: produced bytes buffered before the core applies backpressure. Must be
    /// at least `flush_bytes_max`. A produce whose bytes do not fit waits until earlier ones
    /// are durable (a single request larger than the budget takes all of it).
    #[setting(value = "BYTES", help = "Per-core flush buffer limit in bytes")]
    flush_buffer_bytes_max: u64 = 64 * 1024 * 1024,
    /// Per network core: bytes of object ranges cached for fetches (LRU: a window object as a
    /// whole, a compacted object chunk by chunk). The agent's cache is this times the network
    /// cores: each block read from the store is cached once, by the core that owns it, and
    /// served to fetches on every core; the chunk size for reading compacted objects follows
    /// from that total, see [agent.md](agent.md#fetch-the-read-path). The objects this agent
    /// writes enter every core's cache as they are committed, so consumers at the live edge
    /// never read the store; misses are read with ranged GETs and cached. See
    /// [agent.md](agent.md#fetch-the-read-path).
    #[setting(value = "BYTES", help = "Per-core block cache limit in bytes")]
    block_cache_bytes_max: u64 = 256 * 1024 * 1024,
    /// How often a thread of its own gives the allocator's free memory back to the kernel
    /// (glibc's `malloc_trim`); 0 never. The agent keeps freed large buffers in the allocator
    /// for reuse, and without trims its resident memory creeps above what is in use; each trim
    /// briefly locks each allocator arena in turn. Its count and time are in the metrics
    /// (`sluice_allocator_trim*`). See [agent.md](agent.md#memory). Linux with glibc only.
    #[setting(
        value = "MS",
        help = "Interval of allocator trims, 0 never",
        min = 0,
        max = 3_600_000
    )]
    allocator_trim_interval_ms: u64 = 10_000,
    /// Per network core: incremental fetch sessions (KIP-227) kept (Kafka's
    /// `max.incremental.fetch.session.cache.slots`); the least recently used is evicted to make
    /// room, and its client starts a new one. 0 disables sessions (clients then send full
    /// fetches).
    #[setting(value = "COUNT", help = "Fetch sessions kept per core")]
    fetch_sessions_max: usize = 1_000,
    /// Client quotas: samples a client's rate is measured over (Kafka's `quota.window.num`). A
    /// rate is counted over at least `quota_window_num - 1` samples, so a new
    /// client's first burst is spread over that time. See [quotas.md](quotas.md).
    #[setting(
        value = "COUNT",
        help = "Client quotas: samples per rate window",
        min = 1,
        max = 1_000
    )]
    quota_window_num: u32 = 11,
    /// Client quotas: seconds per sample (Kafka's `quota.window.size.seconds`). The
    /// whole window (`quota_window_num` × this) is also the longest throttle handed out.
    #[setting(value = "SECONDS", help = "Client quotas: seconds per sample", min = 1, max = 3_600)]
    quota_window_size_seconds: u32 = 1,
    /// Per executor: glommio io memory, registered with io_uring and charged to
    /// `RLIMIT_MEMLOCK` (see below).
    #[setting(
        value = "BYTES",
        help = "glommio io memory per executor in bytes",
        min = super::IO_MEMORY_BYTES_MIN
    )]
    io_memory_bytes: u64 = 512 * 1024,
    /// Longest time produced data waits before it is written as an object: the window closes at
    /// the latest this long after its first batch (longer on a slow store, see
    /// `flush_interval_max_ms`, or when the PUT budget is spent, see
    /// `flush_puts_per_second_max`), and sooner when the store is idle (`flush_group_commit`).
    /// Produce latency under continuous load is up to about this plus one PUT; on an idle agent
    /// about one PUT. Also sets the default PUT budget on an object store.
    #[setting(value = "MS", help = "Longest wait before buffered data is flushed", min = 1)]
    flush_interval_ms: u64 = 10,
    /// A window closes early once it holds this many bytes of batches (one object per window,
    /// for the whole agent).
    #[setting(value = "BYTES", help = "Buffered bytes that start a flush early", min = 1)]
    flush_bytes_max: u64 = 8 * 1024 * 1024,
    /// Closed windows whose object (PUT) is in flight at once. When all are in flight, the next
    /// window waits, and so, through the metadata core's bounded queue, do producers. The bytes
    /// in flight are already bounded by every core's `flush_buffer_bytes_max` (a produce holds
    /// its bytes until it is answered), so this is a backstop: with 4 (the old default) windows
    /// queued behind S3 Standard's PUTs.
    #[setting(
        value = "COUNT",
        help = "Flush windows (PUTs) in flight at once",
        min = 1,
        max = crate::metadata_core::FLUSH_WINDOWS_INFLIGHT_LIMIT
    )]
    flush_windows_inflight_max: usize = 128,
    /// On a slow store windows stretch to half the median time recent log entries took to
    /// upload, up to this. A window much shorter than the PUT buys little latency and costs a
    /// PUT (or several hedged copies) each; on the S3 Standard model this halves PUTs per
    /// second at the same produce P99
    /// ([benchmarks.md](benchmarks.md#flush-latency-on-the-models)). At or below
    /// `flush_interval_ms`: fixed windows.
    #[setting(value = "MS", help = "Longest flush window when PUTs are slow")]
    flush_interval_max_ms: u64 = 50,
    /// The PUT budget: flush windows (log entries, one object each) sealed per second at most,
    /// on average, over a bucket of a tenth of a second of it (so at most `budget × T + budget
    /// / 10` in any `T` seconds). A window sealed early (`flush_group_commit`) or at its
    /// interval waits for room in it; only a window at `flush_bytes_max` and admin commands go
    /// without (and still count). On an object store the default is what fixed windows of
    /// `flush_interval_ms` cost at most, so the default cost does not change; raise it to buy
    /// latency under load (a window every 1/budget seconds), lower it to cap the bill (windows
    /// then last longer than `flush_interval_ms`). A lone agent on a local directory (the default
    /// store) or in memory bills no requests: there the default is 1000, which lets a Java
    /// producer with default settings run at 0.77–0.89× Apache Kafka's rate (four runs)
    /// instead of 0.37–0.38×, for 20–100 % more agent CPU per GB
    /// ([benchmarks.md](benchmarks.md#a-local-directorys-default-budget-1000-windows-a-second-7-dec-2026-07210831-utc)).
    /// It counts windows: hedged copies (`put_copies_max`) multiply the PUTs billed, checkpoints
    /// and compaction add a few. The arithmetic in dollars:
    /// [agent.md](agent.md#the-put-budget-latency-against-put-dollars).
    #[setting(
        value = "COUNT",
        help = "Flush windows (PUTs) sealed per second at most",
        default = "1000 / `flush_interval_ms` (100) on an object store or with `metadata`; 1000 on a local directory or memory store",
        min = 1, max = super::FLUSH_PUTS_PER_SECOND_LIMIT
    )]
    flush_puts_per_second_max: Option<u64> = None,
    /// Seal a window as soon as it pays, within the PUT budget: when no upload is in flight and
    /// produced bytes are waiting (the store is idle; a lone produce on an idle agent is
    /// answered after one PUT, not a window plus a PUT), or when it holds 1 MiB.
    /// `flush_interval_ms` is then the longest a window waits for the store. Windows of
    /// consumer-group commits alone never seal early. `false`: windows close only at their
    /// interval, at `flush_bytes_max` or for admin commands (the behaviour before group
    /// commit).
    #[setting(
        value = "BOOL",
        help = "Seal windows early when the store is idle, within the PUT budget"
    )]
    flush_group_commit: bool = true,
    /// Copies of one log entry's create-only PUT at most, started at once or as hedges; the
    /// first to land wins, the store keeps one object. **This multiplies the PUT bill on a slow
    /// store**: on the S3 Standard model every entry goes out as 6 copies. 1 turns hedging off
    /// (one PUT per window, the lowest cost).
    #[setting(
        value = "COUNT",
        help = "Copies of one log entry's PUT at most; 1 turns hedging off",
        min = 1,
        max = sluice_engine::store::hedge::COPIES_LIMIT
    )]
    put_copies_max: u32 = 6,
    /// Copies start at once when the store's recent PUT times say one copy misses this more
    /// than 1 % of the time: as many as make all of them missing it rarer than 1 %, up to
    /// `put_copies_max`. A store that meets it gets one copy; the S3 Express model two; a store
    /// whose median is above it all of `put_copies_max`. Copies at once are switched off for
    /// 256 PUTs whenever the calls with copies miss as often as one copy does (copies bought
    /// nothing: correlated latency, e.g. a contended CPU), then tried again; entries over 1 MiB
    /// always go out as one PUT ([metadata-log.md](metadata-log.md#hedged-puts)).
    #[setting(value = "MS", help = "PUT time that copies at once aim for")]
    put_latency_target_ms: u64 = 15,
    /// While no copy has answered, one more starts after this percentile of recent PUT times,
    /// and again after each further such delay, up to `put_copies_max` (classic hedged
    /// requests: a stalled connection costs one delay, not a timeout).
    #[setting(
        value = "PERCENT",
        help = "Percentile of PUT times after which a hedge starts",
        min = 1,
        max = 99
    )]
    put_hedge_percentile: u32 = 95,
    /// Floor of that hedge delay.
    #[setting(value = "MS", help = "Floor of the hedge delay")]
    put_hedge_delay_ms_min: u64 = 5,
    /// Payload bytes of *extra* copies (every copy after an entry's first, at once or hedged)
    /// in flight at once; a copy that would go beyond it is not started (a hedge tries again at
    /// its next delay). An entry's first copy is never held back. Small entries on a slow store
    /// keep their copies; megabyte entries at high throughput, whose PUT time is bandwidth that
    /// copies would only share, get one. The S3 Standard model at the fraud bench's load needs
    /// ~4 MiB (2 MiB raised its PUT P99 from ~108 to ~172 ms in simulation). 0 sends first
    /// copies only. See [metadata-log.md](metadata-log.md#hedged-puts).
    #[setting(
        value = "BYTES",
        help = "Payload bytes of extra PUT copies in flight at most; 0 sends first copies only",
        min = 0, max = sluice_engine::store::hedge::COPY_BYTES_IN_FLIGHT_LIMIT
    )]
    put_copy_bytes_in_flight_max: u64 = 8 * 1024 * 1024,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`). A bigger or
    /// negative size prefix closes that connection before any of the body is read.
    #[setting(
        value = "BYTES",
        help = "Largest accepted request frame in bytes",
        min = 1,
        max = i32::MAX
    )]
    request_bytes_max: u64 = REQUEST_BYTES_MAX_DEFAULT,
    /// Create a topic when a Metadata request names one that does not exist and the client
    /// allows it (Kafka's `auto.create.topics.enable`). Env accepts
    /// `true/false/1/0/yes/no/on/off`.
    #[setting(value = "BOOL", help = "Create unknown topics on metadata requests")]
    auto_create_topics: bool = true,
    /// `acl` checks every request against the ACL bindings stored in the metadata log, with
    /// Kafka's semantics (Kafka's `authorizer.class.name` = `StandardAuthorizer`); see
    /// [operations.md](operations.md#acls). Unset: nothing is checked, and CreateAcls,
    /// DescribeAcls and DeleteAcls answer SECURITY_DISABLED, as Kafka does. Any other name
    /// stops the start.
    #[setting(value = "NAME", help = "`acl`: check requests against ACL bindings")]
    authorizer: Option<String> = None,
    /// Principals the authorizer allows everything (Kafka's `super.users`), written
    /// `User:NAME`. TOML takes a list; env and flag take `User:admin,User:ops`.
    #[setting(value = "LIST", help = "Principals allowed everything, e.g. User:admin")]
    super_users: Vec<String> = Vec::new(),
    /// Allow a request on a resource that no ACL binding names, whoever asks (Kafka's
    /// `allow.everyone.if.no.acl.found`; off by default, as in Kafka).
    #[setting(value = "BOOL", help = "Allow requests on resources no ACL names")]
    allow_everyone_if_no_acl_found: bool = false,
    /// Partition count of auto-created topics (Kafka's `num.partitions`).
    #[setting(
        value = "COUNT",
        help = "Partition count of auto-created topics",
        min = 1,
        max = i32::MAX
    )]
    default_partitions: u32 = 1,
    /// Kafka's `group.initial.rebalance.delay.ms`: the first rebalance of an empty classic
    /// group waits this long for more members (again while new ones keep arriving, at most the
    /// rebalance timeout). 0 rebalances at once (tests).
    #[setting(value = "MS", help = "First rebalance delay of an empty classic group")]
    group_initial_rebalance_delay_ms: u64 = 3_000,
    /// Kafka's `group.min.session.timeout.ms`: a classic JoinGroup asking for a shorter session
    /// is INVALID_SESSION_TIMEOUT (26).
    #[setting(value = "MS", help = "Shortest classic session timeout", min = 1)]
    group_min_session_timeout_ms: i32 = 6_000,
    /// Kafka's `group.max.session.timeout.ms`: the longest session a classic member may ask
    /// for. At least `group_min_session_timeout_ms`.
    #[setting(value = "MS", help = "Longest classic session timeout")]
    group_max_session_timeout_ms: i32 = 1_800_000,
    /// Kafka's `group.max.size`: most members of one classic group. A JoinGroup from a new
    /// member of a full group is GROUP_MAX_SIZE_REACHED (81), before it is given a member id;
    /// members already in the group rejoin as before.
    #[setting(
        value = "COUNT",
        help = "Most members of one classic group",
        min = 1,
        max = super::GROUP_MAX_SIZE_DEFAULT
    )]
    group_max_size: u32 = GROUP_MAX_SIZE_DEFAULT,
    /// Kafka's `group.consumer.heartbeat.interval.ms`: how often KIP-848 members
    /// (`group.protocol=consumer`) are told to heartbeat.
    #[setting(value = "MS", help = "KIP-848 heartbeat interval", min = 1)]
    group_consumer_heartbeat_interval_ms: i32 = 5_000,
    /// Kafka's `group.consumer.session.timeout.ms`: a KIP-848 member not heard from this long
    /// is removed and its partitions reassigned. Must exceed the heartbeat interval.
    #[setting(value = "MS", help = "KIP-848 session timeout")]
    group_consumer_session_timeout_ms: i32 = 45_000,
    /// Server-side assignors KIP-848 members may name (`group.remote.assignor`); the first is
    /// used when a member names none. Known: `uniform`, `range`. TOML takes a list, env and
    /// flag `uniform,range`.
    #[setting(value = "LIST", help = "KIP-848 server assignors, default first, e.g. uniform,range")]
    group_consumer_assignors: Vec<String> = vec!["uniform".to_owned(), "range".to_owned()],
    /// Kafka's `group.consumer.max.size`: most members of one KIP-848 group. A new member's
    /// first ConsumerGroupHeartbeat to a full group is GROUP_MAX_SIZE_REACHED (81).
    #[setting(
        value = "COUNT",
        help = "Most members of one KIP-848 group",
        min = 1,
        max = super::GROUP_MAX_SIZE_DEFAULT
    )]
    group_consumer_max_size: u32 = GROUP_MAX_SIZE_DEFAULT,
    /// Kafka's `offset.metadata.max.bytes`: a committed offset whose metadata string is longer
    /// is refused with OFFSET_METADATA_TOO_LARGE (12).
    #[setting(
        value = "BYTES",
        help = "Longest offset commit metadata in bytes",
        min = 0,
        max = super::OFFSET_METADATA_BYTES_LIMIT
    )]
    offset_metadata_bytes_max: usize = 4096,
    /// Kafka's `offsets.retention.check.interval.ms`: how often each network core runs its
    /// group cleanup. It forgets its groups that have no members and no committed offsets
    /// (ListGroups stops listing them; DescribeGroups then says Dead; a later join starts at
    /// generation 1), and deletes the offsets that `offsets_retention_ms` says have expired.
    #[setting(value = "MS", help = "How often empty groups without offsets are forgotten", min = 1)]
    offsets_retention_check_interval_ms: u64 = 600_000,
    /// Kafka's `offsets.retention.minutes`, in milliseconds. A group's committed offsets are
    /// deleted, durably and all at once, when the group has had no members for this long and
    /// nothing has been committed for it for this long. That covers both a consumer group whose
    /// members left and a simple consumer that stopped committing. Kafka's rule (KIP-211) is
    /// the same but gentler in two places, where Sluice keeps offsets longer: the time without
    /// members is counted from the first cleanup round that finds the group so, and from agent
    /// start for groups that have not been seen since; and a simple consumer's offsets go
    /// together when its newest commit is old, rather than one by one. The offsets of a group
    /// with members never expire, even for topics it no longer subscribes to.
    #[setting(value = "MS", help = "How long a group without members keeps its offsets", min = 1)]
    offsets_retention_ms: u64 = 7 * 24 * 3_600_000,
    /// Kafka's `log.retention.ms`: how long a topic without its own `retention.ms` keeps
    /// records, by each batch's max timestamp (the agent's append time on `LogAppendTime`
    /// topics). -1 keeps them forever. When unset, `log_retention_hours` decides.
    #[setting(
        value = "MS",
        help = "How long topics keep records by default, -1 = forever",
        min = -1
    )]
    log_retention_ms: Option<i64> = None,
    /// Kafka's `log.retention.hours`, used when `log_retention_ms` is unset. -1 keeps records
    /// forever.
    #[setting(
        value = "HOURS",
        help = "Default retention in hours when log_retention_ms is unset",
        min = -1,
        max = i64::MAX / 3_600_000
    )]
    log_retention_hours: i64 = 168,
    /// Kafka's `log.retention.bytes`: bytes per partition a topic without its own
    /// `retention.bytes` keeps at least (the oldest records go while what remains is still at
    /// least this). -1: no size limit.
    #[setting(
        value = "BYTES",
        help = "Bytes per partition kept by default, -1 = no limit",
        min = -1
    )]
    log_retention_bytes: i64 = -1,
    /// Kafka's `log.retention.check.interval.ms`: how often the metadata executor applies
    /// retention (as `DeleteRecords` commands in the log) and collects objects nothing needs
    /// (see [retention.md](retention.md)).
    #[setting(value = "MS", help = "How often retention and garbage collection run", min = 1)]
    log_retention_check_interval_ms: u64 = 300_000,
    /// Kafka's `log.segment.delete.delay.ms`: an object that nothing needs any more (its
    /// records are below every log start offset, its topic was deleted, a checkpoint supersedes
    /// it) stays this long before it is deleted, so that a fetch that resolved it just before
    /// still reads it. Counted from the first sweep that finds it unneeded; after a restart,
    /// from the first sweep after it.
    #[setting(value = "MS", help = "How long an unneeded object waits before deletion")]
    log_segment_delete_delay_ms: u64 = 60_000,
    /// How often object compaction (merging small window objects into large ones) and key
    /// compaction of `cleanup.policy=compact` topics look for work; up to 8 jobs a tick. 0
    /// turns both off. See [retention.md](retention.md).
    #[setting(value = "MS", help = "How often compaction looks for work, 0 = off")]
    compaction_interval_ms: u64 = 10_000,
    /// Size a compacted object aims at; entries under half of it are merged.
    #[setting(
        value = "BYTES",
        help = "Size a compacted object aims at",
        min = 1 << 20,
        max = 1 << 30
    )]
    compaction_object_bytes_target: u64 = 32 * 1024 * 1024,
    /// Index entries one compaction job merges at most (bounds its GETs and its swap commands).
    #[setting(
        value = "COUNT",
        help = "Index entries one compaction job merges at most",
        min = 2,
        max = super::COMMANDS_PER_JOB_INPUTS_MAX
    )]
    compaction_inputs_per_job_max: usize = 10_000,
    /// A metadata-log checkpoint is written after this many log entries; recovery replays at
    /// most about this many entries after the newest checkpoint. With object compaction on (an
    /// agent alone), checkpoints follow the compaction ticks: one right after a tick that
    /// swapped once half this many entries were applied, by the count alone only at twice this
    /// many (so recovery replays at most about twice this many).
    #[setting(value = "COUNT", help = "Metadata-log entries between checkpoints", min = 1)]
    checkpoint_interval_entries: u64 = sluice_engine::log::CHECKPOINT_INTERVAL_ENTRIES_DEFAULT,
    /// Newest checkpoints kept; older ones are deleted, and so are the log entries at or below
    /// the oldest kept one that no index entry points at. At least 2, so that recovery can
    /// skip one unreadable checkpoint.
    #[setting(
        value = "COUNT",
        help = "Newest metadata-log checkpoints kept",
        min = sluice_engine::log::gc::CHECKPOINTS_RETAINED_MIN,
        max = super::CHECKPOINTS_RETAINED_MAX
    )]
    checkpoints_retained: usize = 2,
    /// The cluster's metadata log in PostgreSQL (`postgres://user@host:port/database`): the
    /// agent runs as a member of a cluster on this bucket ([cluster.md](cluster.md)). TLS with
    /// libpq's URL parameters (`sslmode=verify-full&sslrootcert=/path/ca.pem`, `sslcert`,
    /// `sslkey`). Unset: the agent's own log in the store.
    #[setting(
        value = "URL",
        help = "The cluster's metadata log in PostgreSQL, postgres://…",
        secret = true
    )]
    metadata: Option<String> = None,
    /// The cluster's name in the database (1–64 of `[A-Za-z0-9_.-]`); one database can hold
    /// several clusters. Only with `metadata`.
    #[setting(value = "NAME", help = "The cluster's name in the database")]
    cluster_name: String = "sluice".to_owned(),
    /// This agent's id in the cluster, stable across its restarts (its node id in Metadata is a
    /// hash of it). Only with `metadata`.
    #[setting(
        value = "ID",
        help = "This agent's id in the cluster",
        default = "the (first listener's) advertised address"
    )]
    agent_id: Option<String> = None,
    /// This agent's zone: its rack in Metadata, and clients naming it in `client.id`
    /// (`sluice_az=ZONE`) are routed to agents of that zone. Only with `metadata`.
    #[setting(value = "ZONE", help = "This agent's zone")]
    zone: String = String::new(),
    /// The agent's lease in the cluster, renewed every third of it; an agent that cannot renew
    /// it stops accepting writes when it runs out. Only with `metadata`.
    #[setting(value = "MS", help = "The agent's lease in the cluster")]
    lease_ms: u64 = 10_000,
    /// Notify the other agents of each commit and of joins through PostgreSQL's `NOTIFY`, and
    /// listen for theirs: they learn of a commit within milliseconds. `false` for PG-wire
    /// databases without `LISTEN`/`NOTIFY` (CockroachDB, YugabyteDB): agents then learn of
    /// commits at `metadata_poll_interval_ms` and of joins at their lease renewals. Only with
    /// `metadata`.
    #[setting(value = "BOOL", help = "LISTEN/NOTIFY between the cluster's agents")]
    metadata_notify: bool = true,
    /// How often an agent reads the cluster's newest commit position even without a
    /// notification: the safety net for a missed one, and the only way commits are learned
    /// with `metadata_notify = false`. Only with `metadata`.
    #[setting(
        value = "MS",
        help = "How often the cluster's head is read without a notification",
        min = 1,
        max = 60_000
    )]
    metadata_poll_interval_ms: u64 = 1_000,

    toml_only {
        /// Per-listener settings, TOML only: a table `[listener_name.NAME]` (Kafka's
        /// `listener.name.NAME.*`) with five keys. `ssl_client_auth` is Kafka's
        /// `listener.name.NAME.ssl.client.auth`: `required` (clients of that TLS listener present
        /// a certificate chained to `tls_client_ca_file`) or `none`; unset, `required` when
        /// `tls_client_ca_file` is set, else `none`. Kafka's `requested` is not offered. On a
        /// listener without TLS, for a listener that does not exist, or `required` without
        /// `tls_client_ca_file`, the start stops. Also works for the shorthands' listeners
        /// (`SSL`, `SASL_SSL`). `sasl_enabled_mechanisms` is Kafka's
        /// `listener.name.NAME.sasl.enabled.mechanisms`: the mechanisms that SASL listener
        /// offers, each one of `sasl_mechanisms` (which the users file and JWKS checks cover);
        /// unset, `sasl_mechanisms`. The users, OAUTHBEARER settings and the failed-login table
        /// stay shared by every SASL listener. On a listener without SASL, empty, or naming a
        /// mechanism `sasl_mechanisms` does not list, the start stops. `tls_cert_file` and
        /// `tls_key_file` (together) give a TLS listener a certificate of its own (Kafka's
        /// `listener.name.NAME.ssl.keystore.*`), and `tls_client_ca_file` its own client CAs
        /// (`listener.name.NAME.ssl.truststore.*`; set, its clients must present a certificate
        /// they signed unless its `ssl_client_auth` is `none`); unset, the agent-wide files. Both
        /// reload without a restart, as the agent-wide ones do. On a listener without TLS, or one
        /// of certificate and key alone, the start stops; a TLS listener needs a certificate,
        /// its own or the agent's.
        #[setting(help = "Per-listener settings", default = "none")]
        listener_name: BTreeMap<String, ListenerSettings> = BTreeMap::new(),
    }
}
