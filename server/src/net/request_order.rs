//! Which requests of one connection may run at the same time.
//!
//! Kafka handles one request of a connection at a time: it mutes the socket from the moment it
//! reads a request until the response is sent. So a client that pipelines CreateTopics and then
//! Metadata, CreateAcls and then DescribeAcls, OffsetCommit and then OffsetFetch, or a Produce
//! (acks ≥ 1) and then a Fetch on one connection always sees its own earlier change, and clients
//! and tools may rely on it. A connection here pipelines its requests for throughput (a Produce
//! waits a whole flush window), so without a rule the second request of such a pair could run
//! beside the first and read the state from before it.
//!
//! The rule keeps the pipelining that pays and orders everything else:
//!
//! - consecutive Produce requests run side by side (a producer with five requests in flight fills
//!   one window, not five); their [`crate::protocol::ProduceTurn`]s hand their batches to the
//!   metadata core in read order;
//! - consecutive Fetch requests run side by side (they only read);
//! - any other request, and the first request after one of another kind, is a barrier: it starts
//!   only once every earlier request of the connection has completed.
//!
//! A run of Produce (or Fetch) requests therefore starts as a whole after the barrier before it,
//! and a barrier waits for the whole run before it. A request has completed when its response is
//! ready: a Produce with acks ≥ 1 once its window is durable and applied, an admin request once
//! its command is. A Produce with acks = 0 completes when its batches are in the metadata core's
//! queue (nobody waits for its answer), so a request after it sees its batches only once their
//! window is durable — Kafka appends an acks = 0 batch before it reads on, so this is one place
//! where Sluice promises less.
//!
//! The connection holds a request that may not start yet and reads nothing more until it may,
//! as Kafka's muted socket reads nothing: no queue grows, and the limit on requests in flight
//! (`REQUESTS_INFLIGHT_MAX`) is unchanged. The check is a comparison per request; nothing is
//! allocated.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::ApiKey;

/// How a request pipelines with the requests next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Runs beside the Produce requests just before it.
    Produce,
    /// Runs beside the Fetch requests just before it.
    Fetch,
    /// Runs alone: after every earlier request, before every later one.
    Other,
}

impl RequestKind {
    /// The kind of a request with this API key (-1 when the frame is too short to hold one: such
    /// a frame is refused, alone).
    pub fn of(api_key: i16) -> Self {
        if api_key == ApiKey::Produce as i16 {
            RequestKind::Produce
        } else if api_key == ApiKey::Fetch as i16 {
            RequestKind::Fetch
        } else {
            RequestKind::Other
        }
    }
}

/// A connection's requests being handled, in read order, and the rule for starting the next
/// one (see the module doc). Yields each request's output in read order, as
/// [`FuturesOrdered`] does.
#[derive(Debug)]
pub struct InflightRequests<F: Future> {
    requests: FuturesOrdered<F>,
    /// The kind of the requests being handled: one run of Produce or Fetch requests, or one other
    /// request. Meaningless while none is.
    running: RequestKind,
}

impl<F: Future> Default for InflightRequests<F> {
    fn default() -> Self {
        Self {
            requests: FuturesOrdered::new(),
            running: RequestKind::Other,
        }
    }
}

impl<F: Future> InflightRequests<F> {
    /// Whether a request of `kind`, read after every request here, may start now.
    pub fn may_start(&self, kind: RequestKind) -> bool {
        self.requests.is_empty() || (kind == self.running && kind != RequestKind::Other)
    }

    /// Starts a request that [`Self::may_start`].
    pub fn start(&mut self, kind: RequestKind, request: F) {
        debug_assert!(
            self.may_start(kind),
            "a {kind:?} request started beside {:?}",
            self.running
        );
        self.running = kind;
        self.requests.push_back(request);
    }

    /// Requests started and not yet yielded.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Drops every request here unanswered (the connection is closing).
    pub fn clear(&mut self) {
        self.requests = FuturesOrdered::new();
    }
}

impl<F: Future> Stream for InflightRequests<F> {
    type Item = F::Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        // `FuturesOrdered` is `Unpin` whatever it holds, and so is this.
        Pin::new(&mut self.get_mut().requests).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.requests.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::cell::RefCell;

    use futures::channel::oneshot;
    use futures::{FutureExt, StreamExt};

    use super::*;

    const PRODUCE: RequestKind = RequestKind::Produce;
    const FETCH: RequestKind = RequestKind::Fetch;
    const OTHER: RequestKind = RequestKind::Other;

    type Request = std::pin::Pin<Box<dyn Future<Output = usize>>>;

    /// A request that finishes when its sender fires, and logs when it finished.
    fn request(
        index: usize,
        log: &std::rc::Rc<RefCell<Vec<usize>>>,
    ) -> (oneshot::Sender<()>, Request) {
        let (finish, finished) = oneshot::channel::<()>();
        let log = std::rc::Rc::clone(log);
        let request = Box::pin(async move {
            let _ = finished.await;
            log.borrow_mut().push(index);
            index
        });
        (finish, request)
    }

    #[test]
    fn kinds_follow_the_api_key() {
        assert_eq!(RequestKind::of(ApiKey::Produce as i16), PRODUCE);
        assert_eq!(RequestKind::of(ApiKey::Fetch as i16), FETCH);
        for key in [ApiKey::Metadata, ApiKey::CreateTopics, ApiKey::OffsetCommit] {
            assert_eq!(RequestKind::of(key as i16), OTHER);
        }
        assert_eq!(RequestKind::of(-1), OTHER);
    }

    /// Read order: P P F F X P. The runs start whole, each barrier waits for everything before
    /// it however the requests finish (newest first here), and outputs come back in read order.
    #[test]
    fn runs_pipeline_and_barriers_wait_for_every_earlier_request() {
        let log = std::rc::Rc::new(RefCell::new(Vec::new()));
        let mut inflight: InflightRequests<Request> = InflightRequests::default();
        let mut yielded = Vec::new();
        // Takes every output ready, in read order.
        fn drain(inflight: &mut InflightRequests<Request>, yielded: &mut Vec<usize>) {
            while let Some(Some(index)) = inflight.next().now_or_never() {
                yielded.push(index);
            }
        }

        assert!(inflight.may_start(PRODUCE));
        let (finish_0, request_0) = request(0, &log);
        inflight.start(PRODUCE, request_0);
        assert!(inflight.may_start(PRODUCE), "produces pipeline");
        let (finish_1, request_1) = request(1, &log);
        inflight.start(PRODUCE, request_1);
        assert!(!inflight.may_start(FETCH), "a fetch after produces waits");
        assert!(!inflight.may_start(OTHER));

        // The newer produce finishes first: the older still holds the fetch back.
        finish_1.send(()).unwrap();
        drain(&mut inflight, &mut yielded);
        assert_eq!(*log.borrow(), [1]);
        assert!(yielded.is_empty(), "outputs leave in read order");
        assert!(!inflight.may_start(FETCH));
        finish_0.send(()).unwrap();
        drain(&mut inflight, &mut yielded);
        assert_eq!(yielded, [0, 1]);

        assert!(inflight.may_start(FETCH));
        let (finish_2, request_2) = request(2, &log);
        inflight.start(FETCH, request_2);
        let (finish_3, request_3) = request(3, &log);
        assert!(inflight.may_start(FETCH), "fetches pipeline");
        inflight.start(FETCH, request_3);
        assert!(
            !inflight.may_start(PRODUCE),
            "a produce after fetches waits"
        );
        assert!(!inflight.may_start(OTHER));
        finish_3.send(()).unwrap();
        drain(&mut inflight, &mut yielded);
        assert!(!inflight.may_start(OTHER), "one fetch still runs");
        finish_2.send(()).unwrap();
        drain(&mut inflight, &mut yielded);
        assert_eq!(yielded, [0, 1, 2, 3]);

        assert!(inflight.may_start(OTHER));
        let (finish_4, request_4) = request(4, &log);
        inflight.start(OTHER, request_4);
        for kind in [PRODUCE, FETCH, OTHER] {
            assert!(!inflight.may_start(kind), "nothing runs beside {kind:?}");
        }
        finish_4.send(()).unwrap();
        drain(&mut inflight, &mut yielded);
        assert!(inflight.may_start(PRODUCE));
        let (finish_5, request_5) = request(5, &log);
        inflight.start(PRODUCE, request_5);
        finish_5.send(()).unwrap();
        drain(&mut inflight, &mut yielded);
        assert_eq!(*log.borrow(), [1, 0, 3, 2, 4, 5]);
        assert_eq!(yielded, [0, 1, 2, 3, 4, 5]);
        assert!(inflight.is_empty());
    }

    /// A request in the middle given up (its sender dropped: the request ends without its
    /// event) holds nobody up, and the barrier behind it still waits for the one still running;
    /// clearing (a refused request closes the connection) drops the rest unanswered and leaves
    /// the connection free to start anything.
    #[test]
    fn a_request_ending_in_the_middle_or_a_close_keeps_the_order() {
        let log = std::rc::Rc::new(RefCell::new(Vec::new()));
        let mut inflight: InflightRequests<Request> = InflightRequests::default();
        let mut finishes = Vec::new();
        for index in 0..3 {
            let (finish, request) = request(index, &log);
            inflight.start(PRODUCE, request);
            finishes.push(Some(finish));
        }
        // The middle one is cancelled.
        finishes[1] = None;
        assert_eq!(inflight.next().now_or_never(), None, "the first still runs");
        assert_eq!(*log.borrow(), [1]);
        assert!(!inflight.may_start(OTHER));
        finishes[0].take().unwrap().send(()).unwrap();
        assert_eq!(inflight.next().now_or_never(), Some(Some(0)));
        assert_eq!(inflight.next().now_or_never(), Some(Some(1)));
        assert!(!inflight.may_start(OTHER), "the third still runs");
        assert_eq!(inflight.len(), 1);

        inflight.clear();
        assert!(inflight.is_empty());
        assert!(inflight.may_start(OTHER));
        drop(finishes);
        assert_eq!(inflight.next().now_or_never(), Some(None));
        // The third was dropped unfinished: it never ran to its end.
        assert_eq!(*log.borrow(), [1, 0]);
    }
}
