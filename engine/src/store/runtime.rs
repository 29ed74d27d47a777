//! The runtime bridge: store calls from any executor, run on a dedicated tokio runtime.
//!
//! The agent's cores run glommio executors, but `object_store`'s HTTP client (reqwest on hyper)
//! needs a tokio reactor and timer. Running a tokio runtime inside each core would put HTTP
//! parsing and TLS on the cores that serve Kafka clients, and blocking on HTTP there would stall
//! every connection the core owns. So the store gets its own tokio runtime on its own OS threads;
//! a call is spawned onto it through the runtime's handle (tokio's injection queue is the channel)
//! and answered on a `futures::channel::oneshot`, which any executor can await — glommio, tokio or
//! `futures::executor::block_on`.
//!
//! Backpressure: at most `inflight_requests_max` calls are queued or running; the next caller
//! waits (asynchronously) for a slot, so a burst of fetch misses cannot queue unbounded work.
//! A caller that stops waiting does not cancel its call: a PUT that was started runs to the end
//! (its outcome is then unknown to the caller, as after any lost response).
//!
//! One store, one runtime: give `start` an S3 store that has never been called elsewhere. The HTTP
//! client pools connections whose I/O is driven by the runtime that opened them; a connection
//! opened on another runtime that is no longer polled makes later calls hang until the request
//! timeout (seen in `tests/store_loopback_floor.rs`).

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::error::{Op, StoreError};
use super::{ObjectInfo, ObjectStorage, StoreResult};

/// How big the store runtime is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRuntimeConfig {
    /// OS threads of the tokio runtime. One or two is plenty: they mostly wait on sockets.
    pub worker_threads: usize,
    /// Calls queued or running at once; callers beyond it wait for a slot.
    pub inflight_requests_max: usize,
    /// Name of the runtime's threads.
    pub thread_name: &'static str,
    /// Nice value the runtime's threads give themselves (0: unchanged). The agent runs its
    /// background work (compaction, garbage collection) on a second runtime at a positive value,
    /// so that the CPU those calls need (HTTP, TLS, a 32 MiB body) yields to the hot path's.
    pub thread_nice: i32,
}

impl Default for StoreRuntimeConfig {
    fn default() -> Self {
        StoreRuntimeConfig {
            worker_threads: 1,
            inflight_requests_max: 256,
            thread_name: "sluice-store",
            thread_nice: 0,
        }
    }
}

/// How long dropping the bridge waits for running calls before abandoning them.
const SHUTDOWN_TIMEOUT_MS: u64 = 1_000;

/// An [`ObjectStorage`] whose calls run on a private tokio runtime. Dropping the last handle stops
/// the runtime: calls still running are given `SHUTDOWN_TIMEOUT_MS` (1 s) and then abandoned (their
/// callers get `Unavailable`).
#[derive(Debug)]
pub struct StoreRuntime {
    inner: Arc<dyn ObjectStorage>,
    handle: tokio::runtime::Handle,
    /// One permit per call queued or running (tokio's semaphore is executor-agnostic).
    permits: Arc<tokio::sync::Semaphore>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StoreRuntime {
    /// Starts the runtime's threads and returns the bridged store.
    pub fn start(
        inner: Arc<dyn ObjectStorage>,
        config: StoreRuntimeConfig,
    ) -> StoreResult<Arc<dyn ObjectStorage>> {
        if config.worker_threads == 0 || config.inflight_requests_max == 0 {
            return Err(StoreError::invalid_config(format!(
                "store runtime needs at least one worker thread and one in-flight request, got {config:?}"
            )));
        }
        let permits_max = config
            .inflight_requests_max
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let nice = config.thread_nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name(config.thread_name)
            .on_thread_start(move || {
                if nice != 0 {
                    // SAFETY: setpriority only reads its integer arguments; `who = 0` with
                    // PRIO_PROCESS is the calling thread on Linux (each thread has its own nice
                    // value). A failure leaves the default priority: slower, never wrong.
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                    }
                }
            })
            .enable_all()
            .build()
            .map_err(|error| {
                StoreError::invalid_config(format!("cannot start the store runtime: {error}"))
            })?;
        Ok(Arc::new(StoreRuntime {
            inner,
            handle: runtime.handle().clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(permits_max)),
            runtime: Some(runtime),
        }))
    }

    async fn call<T, F, Fut>(&self, op: Op, key: &str, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn ObjectStorage>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let stopped = |what: &str| StoreError::Unavailable {
            op,
            key: key.to_owned(),
            message: what.to_owned(),
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| stopped("store runtime is shut down"))?;
        let (answer, answered) = futures::channel::oneshot::channel();
        let inner = self.inner.clone();
        self.handle.spawn(async move {
            let result = work(inner).await;
            drop(permit);
            // The caller may have stopped waiting; the call's effect stands either way.
            let _ = answer.send(result);
        });
        answered
            .await
            .map_err(|_| stopped("store runtime stopped before the call completed"))?
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        self.permits.close();
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Blocking inside another tokio runtime is forbidden (and would panic).
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_millis(SHUTDOWN_TIMEOUT_MS));
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectStorage for StoreRuntime {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        let owned = key.to_owned();
        self.call(Op::Put, key, move |inner| async move {
            inner.put_create(&owned, payload).await
        })
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let owned = key.to_owned();
        self.call(
            Op::Get,
            key,
            move |inner| async move { inner.get(&owned).await },
        )
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let owned = key.to_owned();
        self.call(Op::Get, key, move |inner| async move {
            inner.get_range(&owned, range).await
        })
        .await
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        let owned = key.to_owned();
        self.call(Op::Get, key, move |inner| async move {
            inner.get_tail(&owned, len).await
        })
        .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let owned = key.to_owned();
        self.call(Op::Head, key, move |inner| async move {
            inner.head(&owned).await
        })
        .await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        let owned = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.call(Op::List, prefix, move |inner| async move {
            inner.list(&owned, start_after.as_deref()).await
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let owned = key.to_owned();
        self.call(Op::Delete, key, move |inner| async move {
            inner.delete(&owned).await
        })
        .await
    }

    /// One call on the runtime for the whole batch (the backend batches the requests).
    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        let owned = keys.to_vec();
        let first = keys.first().map_or("", String::as_str);
        match self
            .call(Op::Delete, first, move |inner| async move {
                Ok(inner.delete_many(&owned).await)
            })
            .await
        {
            Ok(results) => results,
            Err(error) => {
                let message = error.to_string();
                keys.iter()
                    .map(|key| {
                        Err(StoreError::Unavailable {
                            op: Op::Delete,
                            key: key.clone(),
                            message: message.clone(),
                        })
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::ObjectStoreBackend;

    /// Counts how many calls run at once; each call needs the tokio timer (fails without tokio).
    #[derive(Debug, Default)]
    struct Concurrency {
        running: AtomicUsize,
        running_max: AtomicUsize,
        /// The nice value of the thread the last `list` ran on.
        list_nice: std::sync::atomic::AtomicI32,
    }

    #[async_trait::async_trait]
    impl ObjectStorage for Concurrency {
        async fn put_create(&self, _: &str, _: Vec<Bytes>) -> StoreResult<()> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.running_max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
        async fn get(&self, key: &str) -> StoreResult<Bytes> {
            Err(StoreError::NotFound {
                key: key.to_owned(),
            })
        }
        async fn get_range(&self, key: &str, _: Range<u64>) -> StoreResult<Bytes> {
            self.get(key).await
        }
        async fn get_tail(&self, key: &str, _: u64) -> StoreResult<(Bytes, u64)> {
            Err(StoreError::NotFound {
                key: key.to_owned(),
            })
        }
        async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
            Err(StoreError::NotFound {
                key: key.to_owned(),
            })
        }
        async fn list(&self, _: &str, _: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
            // SAFETY: getpriority reads its integer arguments only; `who = 0` is the calling
            // thread on Linux.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            self.list_nice.store(nice, Ordering::SeqCst);
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str) -> StoreResult<()> {
            Ok(())
        }
    }

    #[test]
    fn calls_work_from_a_thread_without_tokio() {
        let store = StoreRuntime::start(
            Arc::new(ObjectStoreBackend::in_memory()),
            StoreRuntimeConfig::default(),
        )
        .unwrap();
        let worker = std::thread::spawn(move || {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "this thread must not be in tokio"
            );
            futures::executor::block_on(async {
                store
                    .put_create(
                        "a/1",
                        vec![Bytes::from_static(b"he"), Bytes::from_static(b"llo")],
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    store.get("a/1").await.unwrap(),
                    Bytes::from_static(b"hello")
                );
                assert_eq!(store.list("a", None).await.unwrap().len(), 1);
                assert_eq!(
                    store.put_create("a/1", vec![]).await.unwrap_err().kind(),
                    crate::store::StoreErrorKind::AlreadyExists
                );
            });
        });
        worker.join().unwrap();
    }

    #[test]
    fn inflight_calls_are_bounded() {
        let inner = Arc::new(Concurrency::default());
        let config = StoreRuntimeConfig {
            worker_threads: 2,
            inflight_requests_max: 3,
            ..StoreRuntimeConfig::default()
        };
        let store = StoreRuntime::start(inner.clone(), config).unwrap();
        futures::executor::block_on(async {
            let calls = (0..12).map(|i| {
                let store = store.clone();
                async move { store.put_create(&format!("k{i}"), vec![]).await }
            });
            for result in futures::future::join_all(calls).await {
                result.unwrap();
            }
        });
        let running_max = inner.running_max.load(Ordering::SeqCst);
        assert!(running_max <= 3, "{running_max} calls ran at once, limit 3");
        assert!(running_max >= 2, "calls should overlap, saw {running_max}");
    }

    #[test]
    fn dropping_the_bridge_stops_its_threads() {
        let store = StoreRuntime::start(
            Arc::new(Concurrency::default()),
            StoreRuntimeConfig::default(),
        )
        .unwrap();
        futures::executor::block_on(store.put_create("k", vec![])).unwrap();
        drop(store);
        // Dropping inside a tokio runtime must not panic either.
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = StoreRuntime::start(
            Arc::new(Concurrency::default()),
            StoreRuntimeConfig::default(),
        )
        .unwrap();
        outer.block_on(async move {
            store.put_create("k", vec![]).await.unwrap();
            drop(store);
        });
    }

    /// The runtime's threads take the configured nice value (the agent's background runtime);
    /// the default leaves them as the caller's.
    #[test]
    fn threads_take_the_configured_nice_value() {
        let nice_of_a_call = |thread_nice: i32| {
            let inner = Arc::new(Concurrency::default());
            let store = StoreRuntime::start(
                inner.clone(),
                StoreRuntimeConfig {
                    thread_nice,
                    ..StoreRuntimeConfig::default()
                },
            )
            .unwrap();
            futures::executor::block_on(store.list("any", None)).unwrap();
            inner.list_nice.load(Ordering::SeqCst)
        };
        // SAFETY: as in `list` above, for this test's own thread.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(nice_of_a_call(0), own);
        assert_eq!(nice_of_a_call(7), 7.max(own));
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let config = StoreRuntimeConfig {
            worker_threads: 0,
            inflight_requests_max: 1,
            ..StoreRuntimeConfig::default()
        };
        assert!(StoreRuntime::start(Arc::new(Concurrency::default()), config).is_err());
    }
}
