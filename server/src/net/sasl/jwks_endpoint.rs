//! OAUTHBEARER keys from a JWKS endpoint (Kafka's `sasl.oauthbearer.jwks.endpoint.url`), fetched
//! at start and refreshed off the network cores.
//!
//! One thread (`sluice-jwks`, a current-thread tokio runtime for reqwest over rustls) owns the
//! fetching. Connections never wait for it: they read the newest key set from a [`JwksBoard`]
//! (an `Arc` behind a lock held only to clone or swap it) and, when a token names a `kid` the set
//! lacks, ask for an early refetch by setting a flag and waking the thread
//! ([`JwksBoard::request_refetch`]), then refuse that token.
//!
//! - **At start** the first fetch must succeed, or the agent does not start (the error names the
//!   URL).
//! - **Periodically**, every `sasl_oauthbearer_jwks_endpoint_refresh_ms`. A failed refresh keeps
//!   the keys in use, logs a warning, and is retried after the backoff (below) until one succeeds.
//! - **Early**, when a token names an unknown `kid`: at most one fetch per backoff, which starts at
//!   `sasl_oauthbearer_jwks_endpoint_retry_backoff_ms` ([`REFETCH_BACKOFF_MS_MIN`]) and doubles
//!   after every early fetch that changed nothing (or failed), up to
//!   `sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms` ([`REFETCH_BACKOFF_MS_MAX`]); a fetch
//!   that changes the set resets it. A flood of tokens with made-up `kid`s is thereby a handful
//!   of fetches, not a flood (Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms` and
//!   `...retry.backoff.max.ms`).
//!
//! **Bounds.** A response larger than [`JWKS_FILE_BYTES_MAX`] (by its `Content-Length` or as it
//! streams in), with more than [`JWKS_KEYS_MAX`] keys, without keys, or with a key that cannot
//! verify signatures is refused with a warning (and keeps the keys in use); at start it stops the
//! start. Each fetch has a [`FETCH_TIMEOUT_MS`] deadline, and redirects are not followed.
//!
//! The thread ends within a second of the last validator holding the board being dropped (or
//! when the fetch it is waiting for ends, at most [`FETCH_TIMEOUT_MS`] later).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use super::oauthbearer::{JWKS_FILE_BYTES_MAX, JWKS_KEYS_MAX, JwksError, KeySet};

/// Kafka's `sasl.oauthbearer.jwks.endpoint.refresh.ms` default.
pub const REFRESH_MS_DEFAULT: u64 = 3_600_000;
/// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms` default: the least time between an
/// early refetch and the fetch before it.
pub const REFETCH_BACKOFF_MS_MIN: u64 = 100;
/// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms` default.
pub const REFETCH_BACKOFF_MS_MAX: u64 = 10_000;
/// How long one fetch (connect, request, body) may take.
pub const FETCH_TIMEOUT_MS: u64 = 10_000;
/// How a JWKS endpoint is fetched (the `sasl_oauthbearer_jwks_endpoint_*` settings).
#[derive(Debug, Clone)]
pub struct EndpointOptions<'a> {
    /// The periodic refresh.
    pub refresh: Duration,
    /// The least time between an early refetch and the fetch before it.
    pub backoff_min: Duration,
    /// What that time doubles up to.
    pub backoff_max: Duration,
    /// PEM certificates the endpoint's certificate must chain to, instead of the platform's.
    pub ca_file: Option<&'a std::path::Path>,
}

/// How often the thread checks that the board is still used.
const ALIVE_CHECK_MS: u64 = 1_000;

/// The newest keys of a JWKS endpoint, shared by the validators and the fetcher thread.
#[derive(Debug)]
pub struct JwksBoard {
    url: String,
    keys: RwLock<Arc<KeySet>>,
    /// A token named an unknown `kid` since the last fetch started.
    refetch_requested: AtomicBool,
    wake: tokio::sync::Notify,
}

impl JwksBoard {
    /// The newest key set (a clone of an `Arc`; the lock is held for nothing longer).
    pub fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Asks the fetcher for an early refetch; never waits. Requests before the fetch starts
    /// are one request.
    pub fn request_refetch(&self) {
        if !self.refetch_requested.swap(true, Ordering::AcqRel) {
            // Stores a permit when the thread is not waiting, so the request is not lost.
            self.wake.notify_one();
        }
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn publish(&self, set: KeySet) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }
}

/// Fetches `url` once (the first fetch must succeed, else the error names the URL), then starts
/// the thread that refreshes it as `options` say and on request. The board holds the keys.
pub fn start(url: &str, options: &EndpointOptions<'_>) -> Result<Arc<JwksBoard>, JwksError> {
    let fail = |reason: String| JwksError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|error| fail(error.to_string()))?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(FETCH_TIMEOUT_MS));
    if let Some(path) = options.ca_file {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|error| fail(format!("cannot read the CA file {shown}: {error}")))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| fail(format!("the CA file {shown}: {}", with_causes(&error))))?;
        if certificates.is_empty() {
            return Err(fail(format!("the CA file {shown} holds no certificate")));
        }
        builder = builder.tls_certs_only(certificates);
    }
    let client = builder
        .build()
        .map_err(|error| fail(format!("cannot build the HTTP client: {error}")))?;
    // The first fetch runs on the fetcher's own thread too, so that a caller inside a tokio
    // runtime can start an agent; the start waits for its outcome.
    let (sender, outcome) = std::sync::mpsc::sync_channel(1);
    let owned = url.to_owned();
    let timing = (options.refresh, options.backoff_min, options.backoff_max);
    std::thread::Builder::new()
        .name("sluice-jwks".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = sender.send(Err(JwksError::Fetch {
                        url: owned,
                        reason: format!("cannot start the fetcher's runtime: {error}"),
                    }));
                    return;
                }
            };
            let first = match runtime.block_on(fetch(&client, &parsed)) {
                Ok(first) => first,
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            };
            tracing::info!(
                url = owned,
                keys = first.len(),
                skipped = first.skipped(),
                "fetched the OAUTHBEARER JWKS"
            );
            let board = Arc::new(JwksBoard {
                url: owned,
                keys: RwLock::new(Arc::new(first)),
                refetch_requested: AtomicBool::new(false),
                wake: tokio::sync::Notify::new(),
            });
            let weak = Arc::downgrade(&board);
            if sender.send(Ok(board)).is_err() {
                return;
            }
            runtime.block_on(refresh_loop(weak, client, parsed, timing));
        })
        .map_err(|error| fail(format!("cannot start the fetcher thread: {error}")))?;
    outcome
        .recv()
        .map_err(|_| fail("the fetcher thread ended before its first fetch".to_owned()))?
}

async fn refresh_loop(
    board: Weak<JwksBoard>,
    client: reqwest::Client,
    url: reqwest::Url,
    (refresh, backoff_min, backoff_max): (Duration, Duration, Duration),
) {
    let mut backoff = backoff_min;
    let mut last_fetch = Instant::now();
    let mut next_refresh = last_fetch + refresh;
    loop {
        let Some(board) = board.upgrade() else {
            return;
        };
        let now = Instant::now();
        let requested = board.refetch_requested.load(Ordering::Acquire);
        let refresh_due = now >= next_refresh;
        let refetch_due = requested && now >= last_fetch + backoff;
        if refresh_due || refetch_due {
            board.refetch_requested.store(false, Ordering::Release);
            last_fetch = now;
            let early = !refresh_due;
            match fetch(&client, &url).await {
                Ok(set) => {
                    let old = board.snapshot();
                    let changed = old.kids() != set.kids();
                    if changed {
                        tracing::info!(
                            url = board.url(),
                            keys = set.len(),
                            skipped = set.skipped(),
                            early,
                            "the OAUTHBEARER JWKS changed"
                        );
                    }
                    board.publish(set);
                    backoff = if early && !changed {
                        (backoff * 2).min(backoff_max)
                    } else {
                        backoff_min
                    };
                    if refresh_due {
                        next_refresh = Instant::now() + refresh;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the OAUTHBEARER JWKS keeps its keys in use");
                    backoff = (backoff * 2).min(backoff_max);
                    if refresh_due {
                        next_refresh = Instant::now() + backoff.min(refresh);
                    }
                }
            }
            continue;
        }
        let until = if requested {
            next_refresh.min(last_fetch + backoff)
        } else {
            next_refresh
        };
        let wait = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(ALIVE_CHECK_MS));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = board.wake.notified() => {}
        }
    }
}

/// One GET of the JWKS, its body capped at [`JWKS_FILE_BYTES_MAX`] bytes.
async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<KeySet, JwksError> {
    let shown = url.as_str();
    let fail = |reason: String| JwksError::Fetch {
        url: shown.to_owned(),
        reason,
    };
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| fail(with_causes(&error)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("the endpoint answered HTTP {status}")));
    }
    if response
        .content_length()
        .is_some_and(|length| length > JWKS_FILE_BYTES_MAX)
    {
        return Err(JwksError::TooLarge {
            path: shown.to_owned(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| fail(with_causes(&error)))?
    {
        if (body.len() + chunk.len()) as u64 > JWKS_FILE_BYTES_MAX {
            return Err(JwksError::TooLarge {
                path: shown.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let json = std::str::from_utf8(&body).map_err(|_| JwksError::Parse {
        path: shown.to_owned(),
        reason: "the body is not UTF-8".to_owned(),
    })?;
    let set = KeySet::from_jwks_json(json, shown)?;
    debug_assert!(!set.is_empty() && set.len() <= JWKS_KEYS_MAX);
    Ok(set)
}

/// An error and its causes (reqwest's own message does not say why a request failed: a refused
/// connection, a certificate, a timeout).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let shown = inner.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = inner.source();
    }
    text
}

/// Whether `url` may be a JWKS endpoint: `https://`, or `http://` to a loopback address only
/// (keys fetched in clear from elsewhere could be anyone's). `Err` says why not.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("{url:?} is not a URL: {error}"))?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = match bare.parse::<std::net::IpAddr>() {
                Ok(address) => address.is_loopback(),
                Err(_) => host.eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{url:?} is http:// to a host that is not a loopback address: the keys that \
                     sign tokens must come over https://"
                ))
            }
        }
        "file" => Err(format!(
            "{url:?} is a file: set sasl_oauthbearer_jwks_file to its path instead"
        )),
        _ => Err(format!(
            "{url:?} is neither https:// nor http:// (loopback)"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_are_endpoints() {
        for good in [
            "https://idp.example/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/jwks",
            "http://localhost:1/jwks",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("http://idp.example/jwks", "not a loopback"),
            ("http://10.0.0.1/jwks", "not a loopback"),
            ("file:///etc/jwks.json", "sasl_oauthbearer_jwks_file"),
            ("ftp://idp.example/jwks", "neither"),
            ("not a url", "not a URL"),
        ] {
            let error = check_url(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
