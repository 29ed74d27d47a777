//! What one metadata executor carries: the real metadata core (`run_metadata_core`: take the
//! request, resolve the partition, apply the topic's rules, push into the open window, seal it,
//! lay the object out, hand the PUT to the store runtime, apply the commit to the state, publish
//! the watermarks, answer every produce) driven from another glommio executor, as a network core
//! drives it — without sockets, and with a store that keeps nothing (every PUT succeeds at once,
//! behind the real store runtime bridge).
//!
//! The time reported is the metadata executor's **thread CPU time** (`CLOCK_THREAD_CPUTIME_ID`,
//! read on that thread through a `Query`), per window: the work the one metadata core does, not
//! the driver's nor the store runtime's, and not idle time. Each window holds exactly `N`
//! requests (`flush_bytes_max` = the bytes of `N` requests, so the real full-window rule seals
//! it); the driver keeps up to 4 windows in flight and checks every answer's base offset.
//! Criterion's elements/s is requests/s. Per-request and per-window costs come from the
//! difference between `N = 1` and large `N` (docs/scaling.md).
//!
//! `hop/query_round_trip` is the cross-core message hop: a no-op `Query` from the driver executor
//! to the metadata executor and its answer back, wall time, one at a time.
//!
//! Run: `cargo bench -p sluice-server --bench metadata_core`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use glommio::{LocalExecutorBuilder, Placement};
use sluice_engine::batch::{BatchBuilder, BatchHeader, split_batches};
use sluice_engine::log::{LogConfig, MetadataLog};
use sluice_engine::store::{
    ObjectInfo, ObjectStorage, StoreError, StoreRuntime, StoreRuntimeConfig,
};
use sluice_server::metadata_core::watermarks::{
    WatermarkBroadcaster, WatermarkWaiters, run_subscription,
};
use sluice_server::metadata_core::{
    CoreHandle, FlushConfig, PartitionOutcome, ProducePartition, core_channel,
    create_topic_command, run_metadata_core,
};

/// A store that keeps nothing: every create-only PUT succeeds, every read finds nothing. The
/// metadata core's share of a PUT (the object's layout, the hop to the store runtime and back)
/// is real; the store's is not there.
#[derive(Debug)]
struct NullStore;

#[async_trait]
impl ObjectStorage for NullStore {
    async fn put_create(&self, _key: &str, _payload: Vec<Bytes>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        Err(StoreError::NotFound {
            key: key.to_owned(),
        })
    }
    async fn get_range(&self, key: &str, _range: Range<u64>) -> Result<Bytes, StoreError> {
        Err(StoreError::NotFound {
            key: key.to_owned(),
        })
    }
    async fn get_tail(&self, key: &str, _len: u64) -> Result<(Bytes, u64), StoreError> {
        Err(StoreError::NotFound {
            key: key.to_owned(),
        })
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        Err(StoreError::NotFound {
            key: key.to_owned(),
        })
    }
    async fn list(
        &self,
        _prefix: &str,
        _start_after: Option<&str>,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Wakes the executor every [`TICK`]. Without it, one run of this bench hung for minutes with
/// both executors asleep and a window's answers outstanding: a cross-thread wake-up (driver to
/// metadata core, or store runtime to metadata core) that did not wake the executor. The agent's
/// own timers (group ticks, housekeeping) would end such a stall within their period; here the
/// tick does. It costs the metadata thread about 200 wake-ups a second, a few µs each.
fn spawn_ticker() {
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(TICK).await;
        }
    })
    .detach();
}

const TICK: Duration = Duration::from_millis(5);

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The shape of the produce load of one case.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Partitions of the topic; request `i` goes to partitions `i*k .. i*k+k` modulo `P`.
    partitions: u32,
    /// Partitions per request, one batch each.
    per_request: u32,
    /// Records of 1 KiB per batch.
    records: usize,
    /// Requests per window.
    window: usize,
    /// Batches of one idempotent producer (sequences per partition).
    idempotent: bool,
}

impl Shape {
    fn name(&self) -> String {
        format!(
            "P{}/k{}/{}KiB/N{}{}",
            self.partitions,
            self.per_request,
            self.records,
            self.window,
            if self.idempotent { "/idempotent" } else { "" }
        )
    }
}

fn batch(records: usize, producer: Option<(i64, i32)>) -> (BatchHeader, Bytes) {
    let value = vec![0x5a_u8; 1024];
    let mut builder = BatchBuilder::new(1_765_000_000_000);
    if let Some((producer_id, sequence)) = producer {
        builder = builder.producer(producer_id, 0, sequence);
    }
    for index in 0..records {
        builder = builder.record(index as i64, None, &value);
    }
    split_batches(builder.encode(), usize::MAX)
        .unwrap()
        .remove(0)
}

enum Job {
    /// Run `windows` windows; answer the metadata thread's CPU time and the wall time.
    Windows {
        windows: u64,
        reply: std::sync::mpsc::Sender<(Duration, Duration)>,
    },
    /// `count` no-op queries one after the other; answer the wall time.
    Hops {
        count: u64,
        reply: std::sync::mpsc::Sender<Duration>,
    },
}

/// A metadata executor running the real core, and a driver executor playing a network core.
struct Rig {
    jobs: mpsc::UnboundedSender<Job>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

const WINDOWS_IN_FLIGHT: usize = 4;

impl Rig {
    fn start(shape: Shape) -> Rig {
        let store =
            StoreRuntime::start(Arc::new(NullStore), StoreRuntimeConfig::default()).unwrap();
        let (core, inbox) = core_channel(Arc::clone(&store), "bench");
        let mut broadcaster = WatermarkBroadcaster::default();
        let subscriptions = vec![broadcaster.subscribe(), broadcaster.subscribe()];
        let template = batch(shape.records, None);
        let request_bytes = template.1.len() as u64 * u64::from(shape.per_request);
        let config = FlushConfig {
            flush_interval_ms: 60_000,
            flush_interval_max_ms: 60_000,
            // The real full-window rule seals each window at its N-th request.
            flush_bytes_max: request_bytes * shape.window as u64,
            flush_windows_inflight_max: 128,
            flush_puts_per_second_max: 10_000,
            flush_group_commit: false,
            checkpoints_follow_compaction: false,
        };
        let (stop_sender, stop) = oneshot::channel::<()>();
        let metadata = std::thread::Builder::new()
            .name("bench-metadata".to_owned())
            .spawn(move || {
                let executor = LocalExecutorBuilder::new(Placement::Unbound)
                    .name("bench-metadata")
                    .io_memory(1 << 20)
                    .make()
                    .unwrap();
                executor.run(async move {
                    spawn_ticker();
                    let log_config = LogConfig {
                        checkpoint_interval_entries: u64::MAX,
                        ..LogConfig::default()
                    };
                    let (log, _) = MetadataLog::open(store, log_config, 1_765_000_000_000)
                        .await
                        .unwrap();
                    run_metadata_core(log, inbox, broadcaster, config, None, stop).await;
                });
            })
            .unwrap();
        let (jobs, mut job_receiver) = mpsc::unbounded::<Job>();
        let driver = std::thread::Builder::new()
            .name("bench-network".to_owned())
            .spawn(move || {
                let executor = LocalExecutorBuilder::new(Placement::Unbound)
                    .name("bench-network")
                    .io_memory(1 << 20)
                    .make()
                    .unwrap();
                executor.run(async move {
                    spawn_ticker();
                    for subscription in subscriptions {
                        glommio::spawn_local(run_subscription(
                            subscription,
                            Rc::new(WatermarkWaiters::default()),
                        ))
                        .detach();
                    }
                    let mut driver = Driver::new(core, shape, template).await;
                    while let Some(job) = job_receiver.next().await {
                        match job {
                            Job::Windows { windows, reply } => {
                                let _ = reply.send(driver.run(windows).await);
                            }
                            Job::Hops { count, reply } => {
                                let started = Instant::now();
                                for _ in 0..count {
                                    driver.core.query(|_| ()).await.unwrap();
                                }
                                let _ = reply.send(started.elapsed());
                            }
                        }
                    }
                    drop(stop_sender);
                });
            })
            .unwrap();
        Rig {
            jobs,
            threads: vec![driver, metadata],
        }
    }

    fn windows(&self, windows: u64) -> (Duration, Duration) {
        let (reply, answer) = std::sync::mpsc::channel();
        self.jobs
            .unbounded_send(Job::Windows { windows, reply })
            .unwrap();
        answer.recv().unwrap()
    }

    fn hops(&self, count: u64) -> Duration {
        let (reply, answer) = std::sync::mpsc::channel();
        self.jobs
            .unbounded_send(Job::Hops { count, reply })
            .unwrap();
        answer.recv().unwrap()
    }

    fn stop(self) {
        drop(self.jobs);
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

/// The network core's side: builds requests as the produce handler hands them over, keeps
/// `WINDOWS_IN_FLIGHT` windows of answers outstanding, and checks every answer.
struct Driver {
    core: CoreHandle,
    shape: Shape,
    topic: String,
    template: (BatchHeader, Bytes),
    next_partition: u32,
    producer_id: i64,
    sequences: Vec<i32>,
    /// The base offset each partition's next batch must be answered with.
    next_offsets: Vec<u64>,
}

impl Driver {
    async fn new(core: CoreHandle, shape: Shape, template: (BatchHeader, Bytes)) -> Driver {
        let topic = "bench".to_owned();
        let created = core
            .commands(vec![create_topic_command(
                &topic,
                shape.partitions,
                BTreeMap::new(),
            )])
            .await
            .unwrap();
        assert!(created.iter().all(Result::is_ok), "{created:?}");
        let producer_id = if shape.idempotent {
            core.init_producer_id(None).await.unwrap().unwrap().0
        } else {
            -1
        };
        Driver {
            core,
            shape,
            topic,
            template,
            next_partition: 0,
            producer_id,
            sequences: vec![0; shape.partitions as usize],
            next_offsets: vec![0; shape.partitions as usize],
        }
    }

    /// Checks one request's answers: every partition placed right after the previous batch.
    fn check(&mut self, partitions: &[i32], answers: &[PartitionOutcome]) {
        assert_eq!(partitions.len(), answers.len());
        for (partition, answer) in partitions.iter().zip(answers) {
            let appended = answer.as_ref().expect("produce refused");
            let next = &mut self.next_offsets[*partition as usize];
            assert_eq!(appended.base_offset, *next, "partition {partition}");
            *next += self.shape.records as u64;
        }
    }

    fn request(&mut self) -> Vec<ProducePartition> {
        (0..self.shape.per_request)
            .map(|_| {
                let partition = self.next_partition;
                self.next_partition = (partition + 1) % self.shape.partitions;
                let batch = if self.shape.idempotent {
                    let sequence = &mut self.sequences[partition as usize];
                    let batch = batch(self.shape.records, Some((self.producer_id, *sequence)));
                    *sequence += self.shape.records as i32;
                    batch
                } else {
                    self.template.clone()
                };
                ProducePartition {
                    topic: self.topic.clone(),
                    partition: partition as i32,
                    batches: vec![batch],
                }
            })
            .collect()
    }

    /// Runs `windows` full windows; the metadata thread's CPU time and the wall time.
    async fn run(&mut self, windows: u64) -> (Duration, Duration) {
        let cpu_before = self.core.query(|_| thread_cpu_time()).await.unwrap();
        let started = Instant::now();
        let mut outstanding = VecDeque::new();
        for _ in 0..windows {
            for _ in 0..self.shape.window {
                let request = self.request();
                let partitions: Vec<i32> = request.iter().map(|p| p.partition).collect();
                outstanding.push_back((partitions, self.core.produce(request).await.unwrap()));
            }
            while outstanding.len() > WINDOWS_IN_FLIGHT * self.shape.window {
                let (partitions, answer) = outstanding.pop_front().unwrap();
                self.check(&partitions, &answer.await.unwrap());
            }
        }
        for (partitions, answer) in outstanding {
            self.check(&partitions, &answer.await.unwrap());
        }
        let wall = started.elapsed();
        let cpu_after = self.core.query(|_| thread_cpu_time()).await.unwrap();
        (cpu_after.saturating_sub(cpu_before), wall)
    }
}

fn shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();
    // One batch per request, spread over P partitions: windows of 1 request (the per-window
    // floor) up to the 8 MiB window of a 1 GB/s load (512 × 16 KiB).
    for partitions in [12, 64, 1_000] {
        for (records, windows) in [(16, &[1, 64, 512][..]), (1, &[1, 64, 1_000][..])] {
            for &window in windows {
                shapes.push(Shape {
                    partitions,
                    per_request: 1,
                    records,
                    window,
                    idempotent: false,
                });
            }
        }
    }
    // fraud-shaped: one request carries a batch for each of the 12 partitions.
    for window in [1, 16] {
        shapes.push(Shape {
            partitions: 12,
            per_request: 12,
            records: 2,
            window,
            idempotent: false,
        });
    }
    // Idempotent producers: one producer id, a sequence per partition.
    for window in [1, 64] {
        shapes.push(Shape {
            partitions: 64,
            per_request: 1,
            records: 1,
            window,
            idempotent: true,
        });
    }
    shapes
}

fn metadata_core(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("metadata_core_cpu_per_window");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for shape in shapes() {
        let rig = Rig::start(shape);
        // Warm the state (index chunks, maps) before measuring.
        rig.windows(64);
        group.throughput(Throughput::Elements(shape.window as u64));
        group.bench_function(BenchmarkId::from_parameter(shape.name()), |bencher| {
            bencher.iter_custom(|windows| rig.windows(windows).0);
        });
        // Wall time with the driver and the store runtime on the same 2 CPUs: a lower bound on
        // what one core sustains, printed for comparison with the CPU time.
        let windows = (20_000 / shape.window as u64).max(20);
        let (cpu, wall) = rig.windows(windows);
        let requests = windows * shape.window as u64;
        eprintln!(
            "{}: {} windows of {} requests: metadata CPU {:.1} µs/window, {:.2} µs/request; wall {:.0} requests/s ({:.0} % of it on the metadata thread)",
            shape.name(),
            windows,
            shape.window,
            cpu.as_secs_f64() * 1e6 / windows as f64,
            cpu.as_secs_f64() * 1e6 / requests as f64,
            requests as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
        );
        rig.stop();
    }
    group.finish();

    let mut group = criterion.benchmark_group("hop");
    let rig = Rig::start(Shape {
        partitions: 1,
        per_request: 1,
        records: 1,
        window: 1,
        idempotent: false,
    });
    group.bench_function("query_round_trip", |bencher| {
        bencher.iter_custom(|count| rig.hops(count));
    });
    group.finish();
    rig.stop();
}

criterion_group!(benches, metadata_core);
criterion_main!(benches);
