//! [`FaultInjection`]: a store wrapper that fails calls on purpose, for crash and recovery tests.
//!
//! Two modes, usable together. *Random*: each operation has probabilities of an error, a timeout,
//! a slow call and a lost response, drawn from a seeded ChaCha8 stream, so a failing simulation
//! replays exactly from its seed. *Scripted*: tests queue faults ([`FaultInjection::fail_next`]) or
//! pin them to a call's ordinal ([`FaultInjection::fail_call`]: "the 3rd PUT is lost"), and read
//! the per-operation call counters. A random number is drawn for every call, scripted or not, so
//! adding a scripted fault does not shift the random faults of later calls.
//!
//! The lost response is the fault that matters most for Sluice: the store applied the write but
//! the caller hears `Unavailable`. It is what makes "a retried create-only PUT answers
//! AlreadyExists" a case the log must handle by reading the object back.
//!
//! Timeouts and slow calls sleep with `tokio::time::sleep`: run this behind
//! [`super::StoreRuntime`] or in a tokio test.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::{Op, StoreError};
use super::{ObjectInfo, ObjectStorage, StoreResult};

/// What an injected fault does to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answers `Unavailable` without calling the inner store.
    Error,
    /// Waits `timeout_ms`, then answers `Timeout` without calling the inner store.
    Timeout,
    /// Waits `slow_ms`, then calls the inner store.
    Slow,
    /// Calls the inner store — a write HAPPENS — then answers `Unavailable`.
    LostResponse,
}

/// Per-call probabilities of each fault; their sum must not exceed 1.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct FaultProbabilities {
    pub error: f64,
    pub timeout: f64,
    pub slow: f64,
    pub lost_response: f64,
}

impl FaultProbabilities {
    fn validate(&self) -> StoreResult<()> {
        let all = [self.error, self.timeout, self.slow, self.lost_response];
        let in_range = all.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p));
        if !in_range || all.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(StoreError::invalid_config(format!(
                "invalid fault probabilities {self:?}"
            )));
        }
        Ok(())
    }

    /// The fault for a uniform draw in `[0, 1)`.
    fn pick(&self, draw: f64) -> Option<Fault> {
        let mut edge = 0.0;
        for (probability, fault) in [
            (self.error, Fault::Error),
            (self.timeout, Fault::Timeout),
            (self.slow, Fault::Slow),
            (self.lost_response, Fault::LostResponse),
        ] {
            edge += probability;
            if draw < edge {
                return Some(fault);
            }
        }
        None
    }
}

/// Scripted faults waiting, per operation, at most this many (a test that queues more is broken).
const SCRIPTED_FAULTS_MAX: usize = 10_000;
/// Injected faults remembered for [`FaultInjection::injected`]; older ones are forgotten.
const INJECTED_LOG_MAX: usize = 100_000;

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    probabilities: [FaultProbabilities; 5],
    calls: [u64; 5],
    queued: [VecDeque<Fault>; 5],
    pinned: HashMap<(Op, u64), Fault>,
    injected: VecDeque<(Op, u64, Fault)>,
}

/// Injects faults into calls to `inner`; see the module docs.
#[derive(Debug)]
pub struct FaultInjection<S> {
    inner: S,
    timeout_ms: u64,
    slow_ms: u64,
    state: Mutex<State>,
}

impl<S: ObjectStorage> FaultInjection<S> {
    /// No faults until configured. Timeouts wait 1,000 ms and slow calls 200 ms by default.
    pub fn new(inner: S, seed: u64) -> FaultInjection<S> {
        FaultInjection {
            inner,
            timeout_ms: 1_000,
            slow_ms: 200,
            state: Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                probabilities: [FaultProbabilities::default(); 5],
                calls: [0; 5],
                queued: Default::default(),
                pinned: HashMap::new(),
                injected: VecDeque::new(),
            }),
        }
    }

    /// Random faults for one operation.
    pub fn with_probabilities(
        self,
        op: Op,
        probabilities: FaultProbabilities,
    ) -> StoreResult<FaultInjection<S>> {
        probabilities.validate()?;
        if let Some(slot) = self.lock().probabilities.get_mut(op.index()) {
            *slot = probabilities;
        }
        Ok(self)
    }

    /// The same random faults for every operation.
    pub fn with_all_probabilities(
        self,
        probabilities: FaultProbabilities,
    ) -> StoreResult<FaultInjection<S>> {
        probabilities.validate()?;
        self.lock().probabilities = [probabilities; 5];
        Ok(self)
    }

    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> FaultInjection<S> {
        self.timeout_ms = timeout_ms;
        self
    }

    pub fn with_slow_ms(mut self, slow_ms: u64) -> FaultInjection<S> {
        self.slow_ms = slow_ms;
        self
    }

    /// Queues `fault` for the next call of `op` that has no fault pinned by [`Self::fail_call`];
    /// queued faults are consumed in order.
    pub fn fail_next(&self, op: Op, fault: Fault) -> StoreResult<()> {
        let mut state = self.lock();
        let Some(queue) = state.queued.get_mut(op.index()) else {
            return Ok(());
        };
        if queue.len() >= SCRIPTED_FAULTS_MAX {
            return Err(StoreError::invalid_config(format!(
                "more than {SCRIPTED_FAULTS_MAX} scripted {op} faults"
            )));
        }
        queue.push_back(fault);
        Ok(())
    }

    /// Pins `fault` to the `call_number`-th call of `op` (1-based, counted since creation).
    pub fn fail_call(&self, op: Op, call_number: u64, fault: Fault) -> StoreResult<()> {
        let mut state = self.lock();
        if state.pinned.len() >= SCRIPTED_FAULTS_MAX {
            return Err(StoreError::invalid_config(format!(
                "more than {SCRIPTED_FAULTS_MAX} pinned faults"
            )));
        }
        state.pinned.insert((op, call_number), fault);
        Ok(())
    }

    /// Calls of `op` so far, faulted or not.
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls.get(op.index()).copied().unwrap_or(0)
    }

    /// The faults injected so far (the most recent 100,000): operation, call number,
    /// fault.
    pub fn injected(&self) -> Vec<(Op, u64, Fault)> {
        self.lock().injected.iter().copied().collect()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still meaningful.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the call and decides its fault.
    fn decide(&self, op: Op) -> Option<Fault> {
        let mut state = self.lock();
        let index = op.index();
        let call_number = match state.calls.get_mut(index) {
            Some(count) => {
                *count += 1;
                *count
            }
            None => return None,
        };
        let draw: f64 = state.rng.random();
        let fault = match state.pinned.remove(&(op, call_number)) {
            Some(fault) => Some(fault),
            None => match state.queued.get_mut(index).and_then(VecDeque::pop_front) {
                Some(fault) => Some(fault),
                None => state.probabilities.get(index).and_then(|p| p.pick(draw)),
            },
        };
        if let Some(fault) = fault {
            if state.injected.len() >= INJECTED_LOG_MAX {
                state.injected.pop_front();
            }
            state.injected.push_back((op, call_number, fault));
        }
        fault
    }

    /// Runs `call` under the fault decided for this call of `op`.
    async fn run<T>(
        &self,
        op: Op,
        key: &str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let unavailable = |message: &str| StoreError::Unavailable {
            op,
            key: key.to_owned(),
            message: message.to_owned(),
        };
        match self.decide(op) {
            None => call.await,
            Some(Fault::Error) => Err(unavailable("injected error")),
            Some(Fault::Timeout) => {
                tokio::time::sleep(Duration::from_millis(self.timeout_ms)).await;
                Err(StoreError::Timeout {
                    op,
                    key: key.to_owned(),
                    after_ms: self.timeout_ms,
                })
            }
            Some(Fault::Slow) => {
                tokio::time::sleep(Duration::from_millis(self.slow_ms)).await;
                call.await
            }
            Some(Fault::LostResponse) => {
                // The store acts on the call; only the answer is lost.
                let _applied = call.await;
                Err(unavailable(
                    "injected lost response (the call reached the store)",
                ))
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: ObjectStorage> ObjectStorage for FaultInjection<S> {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.run(Op::Put, key, self.inner.put_create(key, payload))
            .await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.run(Op::Get, key, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.run(Op::Get, key, self.inner.get_range(key, range))
            .await
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.run(Op::Get, key, self.inner.get_tail(key, len)).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.run(Op::Head, key, self.inner.head(key)).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.run(Op::List, prefix, self.inner.list(prefix, start_after))
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.run(Op::Delete, key, self.inner.delete(key)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::{ObjectStoreBackend, StoreErrorKind};

    fn noisy(seed: u64) -> FaultInjection<ObjectStoreBackend> {
        FaultInjection::new(ObjectStoreBackend::in_memory(), seed)
            .with_timeout_ms(1)
            .with_slow_ms(1)
            .with_all_probabilities(FaultProbabilities {
                error: 0.2,
                timeout: 0.1,
                slow: 0.1,
                lost_response: 0.1,
            })
            .unwrap()
    }

    async fn outcome_sequence(
        store: &FaultInjection<ObjectStoreBackend>,
    ) -> Vec<Option<StoreErrorKind>> {
        let mut outcomes = Vec::new();
        for i in 0..200 {
            let key = format!("k/{i:05}");
            outcomes.push(
                store
                    .put_create(&key, vec![Bytes::from_static(b"x")])
                    .await
                    .err()
                    .map(|e| e.kind()),
            );
            outcomes.push(store.head(&key).await.err().map(|e| e.kind()));
        }
        outcomes
    }

    #[tokio::test]
    async fn same_seed_gives_the_same_fault_sequence() {
        let (a, b, c) = (noisy(42), noisy(42), noisy(43));
        let (from_a, from_b, from_c) = (
            outcome_sequence(&a).await,
            outcome_sequence(&b).await,
            outcome_sequence(&c).await,
        );
        assert_eq!(from_a, from_b);
        assert_eq!(a.injected(), b.injected());
        assert_ne!(a.injected(), c.injected());
        assert_ne!(from_a, from_c);
        // About half the calls are faulted (probability 0.5 in total).
        let faulted = a.injected().len();
        assert!(
            (140..260).contains(&faulted),
            "{faulted} of 400 calls faulted"
        );
        assert_eq!(a.calls(Op::Put), 200);
        assert_eq!(a.calls(Op::Head), 200);
    }

    #[tokio::test]
    async fn lost_response_really_writes() {
        let store = FaultInjection::new(ObjectStoreBackend::in_memory(), 0);
        store.fail_call(Op::Put, 3, Fault::LostResponse).unwrap();
        for i in 1..=2 {
            store
                .put_create(&format!("log/{i}"), vec![Bytes::from_static(b"a")])
                .await
                .unwrap();
        }
        let lost = store
            .put_create("log/3", vec![Bytes::from_static(b"third")])
            .await
            .unwrap_err();
        assert_eq!(lost.kind(), StoreErrorKind::Unavailable);
        assert_eq!(store.calls(Op::Put), 3);
        // The write happened: the object is there and a retry meets it.
        assert_eq!(
            store.get("log/3").await.unwrap(),
            Bytes::from_static(b"third")
        );
        let retry = store
            .put_create("log/3", vec![Bytes::from_static(b"third")])
            .await
            .unwrap_err();
        assert_eq!(retry.kind(), StoreErrorKind::AlreadyExists);
    }

    #[tokio::test]
    async fn scripted_faults_are_consumed_in_order_and_do_not_call_the_store() {
        let store = FaultInjection::new(ObjectStoreBackend::in_memory(), 0).with_timeout_ms(5);
        store.fail_next(Op::Put, Fault::Error).unwrap();
        store.fail_next(Op::Put, Fault::Timeout).unwrap();
        let payload = || vec![Bytes::from_static(b"v")];
        assert_eq!(
            store.put_create("a", payload()).await.unwrap_err().kind(),
            StoreErrorKind::Unavailable
        );
        assert_eq!(
            store.put_create("a", payload()).await.unwrap_err().kind(),
            StoreErrorKind::Timeout
        );
        // Neither fault reached the store, so the key is still free.
        assert_eq!(
            store.get("a").await.unwrap_err().kind(),
            StoreErrorKind::NotFound
        );
        store.put_create("a", payload()).await.unwrap();
        assert_eq!(
            store.injected(),
            vec![(Op::Put, 1, Fault::Error), (Op::Put, 2, Fault::Timeout)]
        );
    }

    #[test]
    fn probabilities_are_validated() {
        let store = FaultInjection::new(ObjectStoreBackend::in_memory(), 0);
        let too_much = FaultProbabilities {
            error: 0.7,
            timeout: 0.4,
            ..FaultProbabilities::default()
        };
        assert!(store.with_probabilities(Op::Get, too_much).is_err());
    }
}
