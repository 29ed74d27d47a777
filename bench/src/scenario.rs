//! Scenarios: the load-generator settings of each run.
//!
//! A scenario is one or more *steps* (load-generator runs) per target. `throughput` is a ladder of
//! rates, climbed until a step misses its rate or its produce P99 passes 1 s: the last step that
//! held is the "highest sustained MB/s". `--quick` shortens every step so a scenario finishes in
//! about a minute per target (CI smoke test); its numbers are not headline numbers.
//!
//! `replay` is not a list of steps but a fill, a broker restart and two reads ([`ReplayPlan`],
//! driven by `crate::replay`).

use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fraud,
    Throughput,
    Partitions,
    Replay,
    /// Consumer groups; driven by `crate::groups`, not by load-generator steps.
    Groups,
    /// The fraud load for a long time under short retention; driven by `crate::soak`.
    Soak,
    /// Kills, pauses and store faults under an idempotent producer; driven by `crate::chaos`.
    Chaos,
    /// Kafka's ProducerPerformance and ConsumerPerformance, default and recommended client
    /// settings; driven by `crate::single_client`.
    SingleClient,
    /// The fraud load through the three agents of a cluster target (`crate::cluster`).
    Cluster,
    /// Simulated agents appending to and tailing the cluster's sequencer in PostgreSQL; driven
    /// by `crate::sequencer`, no broker.
    Sequencer,
}

impl Scenario {
    pub fn parse(name: &str) -> Option<Scenario> {
        match name {
            "fraud" => Some(Scenario::Fraud),
            "throughput" => Some(Scenario::Throughput),
            "partitions" => Some(Scenario::Partitions),
            "replay" => Some(Scenario::Replay),
            "groups" => Some(Scenario::Groups),
            "soak" => Some(Scenario::Soak),
            "chaos" => Some(Scenario::Chaos),
            "single-client" => Some(Scenario::SingleClient),
            "cluster" => Some(Scenario::Cluster),
            "sequencer" => Some(Scenario::Sequencer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fraud => "fraud",
            Scenario::Throughput => "throughput",
            Scenario::Partitions => "partitions",
            Scenario::Replay => "replay",
            Scenario::Groups => "groups",
            Scenario::Soak => "soak",
            Scenario::Chaos => "chaos",
            Scenario::SingleClient => "single-client",
            Scenario::Cluster => "cluster",
            Scenario::Sequencer => "sequencer",
        }
    }

    /// The load-generator runs, in order; `Err` explains a scenario the harness cannot run yet.
    pub fn steps(self, quick: bool) -> Result<Vec<Load>, String> {
        let fraud = fraud_load(quick);
        match self {
            Scenario::Fraud | Scenario::Cluster => Ok(vec![fraud]),
            Scenario::Throughput => {
                // Doubling to 80 MB/s, then 40-80 MB/s steps: the limits seen on this machine
                // lie between 80 and 320 MB/s.
                let ladder: &[u64] = if quick {
                    &[5, 20]
                } else {
                    &[5, 10, 20, 40, 80, 120, 160, 200, 240, 320, 400, 480]
                };
                let (duration_s, warmup_s) = if quick { (8, 2) } else { (30, 5) };
                Ok(ladder
                    .iter()
                    .map(|&mb| Load {
                        partitions: 64,
                        records_per_sec: None,
                        mb_per_sec: Some(mb),
                        duration_s,
                        warmup_s,
                        ..fraud
                    })
                    .collect())
            }
            Scenario::Partitions => Ok(vec![Load {
                partitions: if quick { 1_000 } else { 10_000 },
                records_per_sec: Some(if quick { 500 } else { 2_000 }),
                ..fraud
            }]),
            Scenario::Replay => {
                Err("a fill, a restart and two reads, not load-generator steps".to_owned())
            }
            Scenario::Groups => {
                Err("runs simulated group members, not load-generator steps".to_owned())
            }
            Scenario::Soak => {
                Err("two long load-generator runs with samples and restarts, not steps".to_owned())
            }
            Scenario::Chaos => {
                Err("its own idempotent producer under kills and faults, not steps".to_owned())
            }
            Scenario::SingleClient => {
                Err("Kafka's Java perf tools, not load-generator steps".to_owned())
            }
            Scenario::Sequencer => {
                Err("simulated agents on the sequencer, no broker and no load generator".to_owned())
            }
        }
    }
}

/// The `fraud` scenario's load: 1 KiB records at 5,000 records/s on 12 partitions, acks=all,
/// linger 5 ms, one consumer; 60 s after 10 s of warm-up (quick: 15 s after 5 s). `soak` runs
/// the same load for longer.
pub fn fraud_load(quick: bool) -> Load {
    let (duration_s, warmup_s) = if quick { (15, 5) } else { (60, 10) };
    Load {
        partitions: 12,
        records_per_sec: Some(5_000),
        mb_per_sec: None,
        record_bytes: 1024,
        linger_ms: 5,
        duration_s,
        warmup_s,
        consumers: 1,
        drain_timeout_s: DRAIN_TIMEOUT_S,
    }
}

/// One load-generator run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub partitions: u32,
    pub records_per_sec: Option<u64>,
    /// MB = 1,048,576 bytes, as the load generator counts.
    pub mb_per_sec: Option<u64>,
    pub record_bytes: u32,
    pub linger_ms: u32,
    pub duration_s: u32,
    pub warmup_s: u32,
    pub consumers: u32,
    /// Upper bound on waiting for the load generator after its schedule ends.
    pub drain_timeout_s: u32,
}

/// Upper bound on waiting for the load generator after its schedule ends (steps at a rate the
/// broker can keep; a fill at the client's top speed gets its own).
pub const DRAIN_TIMEOUT_S: u32 = 20;

impl Load {
    pub fn args(&self, bootstrap: &str, topic: &str, out: &str) -> Vec<String> {
        let mut args = vec![
            "--bootstrap".to_owned(),
            bootstrap.to_owned(),
            "--topic".to_owned(),
            topic.to_owned(),
            "--partitions".to_owned(),
            self.partitions.to_string(),
            "--record-bytes".to_owned(),
            self.record_bytes.to_string(),
            "--acks".to_owned(),
            "all".to_owned(),
            "--linger-ms".to_owned(),
            self.linger_ms.to_string(),
            "--duration-s".to_owned(),
            self.duration_s.to_string(),
            "--warmup-s".to_owned(),
            self.warmup_s.to_string(),
            "--consumers".to_owned(),
            self.consumers.to_string(),
            "--drain-timeout-s".to_owned(),
            self.drain_timeout_s.to_string(),
            "--out".to_owned(),
            out.to_owned(),
        ];
        if let Some(rate) = self.records_per_sec {
            args.extend(["--rate".to_owned(), rate.to_string()]);
        }
        if let Some(mb) = self.mb_per_sec {
            args.extend(["--mb-per-sec".to_owned(), mb.to_string()]);
        }
        args
    }

    pub fn settings(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("partitions".into(), json!(self.partitions));
        map.insert("records_per_sec".into(), json!(self.records_per_sec));
        map.insert("mb_per_sec".into(), json!(self.mb_per_sec));
        map.insert("record_bytes".into(), json!(self.record_bytes));
        map.insert("acks".into(), json!("all"));
        map.insert("linger_ms".into(), json!(self.linger_ms));
        map.insert("duration_s".into(), json!(self.duration_s));
        map.insert("warmup_s".into(), json!(self.warmup_s));
        map.insert("consumers".into(), json!(self.consumers));
        map
    }

    /// Seconds the run may take before the harness kills the load generator.
    pub fn limit_s(&self) -> u64 {
        u64::from(self.duration_s + self.warmup_s + self.drain_timeout_s) + 60
    }
}

/// The `replay` scenario: fill a topic at the client's top speed, restart the broker, read the
/// topic from offset 0 to its end twice (cold: the first read after the restart, every byte from
/// the store or the disk; warm: the same read again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayPlan {
    pub partitions: u32,
    pub record_bytes: u32,
    /// The fill's schedule: far above what any target takes on this machine, so the load
    /// generator sends as fast as its client queue drains, and `fill_records_per_sec ×
    /// fill_duration_s` records in all.
    pub fill_records_per_sec: u64,
    pub fill_duration_s: u32,
    /// Limit on the fill (it ends when every record is acknowledged, or at this limit).
    pub fill_timeout_s: u32,
    /// Limit on each read.
    pub replay_timeout_s: u32,
    /// Readers (one librdkafka consumer each, partitions split among them).
    pub consumers: u32,
}

impl ReplayPlan {
    /// Full: 5,000,000 records of 1 KiB (5.12 GB); quick: 200,000 (205 MB).
    pub fn new(quick: bool) -> ReplayPlan {
        ReplayPlan {
            partitions: 64,
            record_bytes: 1024,
            fill_records_per_sec: if quick { 200_000 } else { 1_000_000 },
            fill_duration_s: if quick { 1 } else { 5 },
            fill_timeout_s: if quick { 300 } else { 1_800 },
            replay_timeout_s: if quick { 300 } else { 1_800 },
            consumers: 1,
        }
    }

    pub fn records(&self) -> u64 {
        self.fill_records_per_sec * u64::from(self.fill_duration_s)
    }

    /// The fill as a load-generator run: produce only, nothing measured as warm-up.
    pub fn fill(&self) -> Load {
        Load {
            partitions: self.partitions,
            records_per_sec: Some(self.fill_records_per_sec),
            mb_per_sec: None,
            record_bytes: self.record_bytes,
            linger_ms: 5,
            duration_s: self.fill_duration_s,
            warmup_s: 0,
            consumers: 0,
            drain_timeout_s: self.fill_timeout_s,
        }
    }

    pub fn replay_args(&self, bootstrap: &str, topic: &str, out: &str) -> Vec<String> {
        [
            "--mode",
            "replay",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--consumers",
            &self.consumers.to_string(),
            "--replay-timeout-s",
            &self.replay_timeout_s.to_string(),
            "--out",
            out,
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect()
    }

    /// Seconds a read may take before the harness kills the load generator.
    pub fn replay_limit_s(&self) -> u64 {
        u64::from(self.replay_timeout_s) + 240
    }

    pub fn settings(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("partitions".into(), json!(self.partitions));
        map.insert("record_bytes".into(), json!(self.record_bytes));
        map.insert("fill_records".into(), json!(self.records()));
        map.insert(
            "fill".into(),
            json!(format!(
                "open loop at {} records/s (above any target's rate: as fast as the client sends), acks=all, linger 5 ms",
                self.fill_records_per_sec
            )),
        );
        map.insert("readers".into(), json!(self.consumers));
        map.insert(
            "reader".into(),
            json!("librdkafka defaults (fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB)"),
        );
        map
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn fraud_matches_the_issue() {
        let steps = Scenario::Fraud.steps(false).unwrap();
        let load = steps[0];
        assert_eq!(
            (load.partitions, load.records_per_sec, load.record_bytes),
            (12, Some(5_000), 1024)
        );
        assert!(load.linger_ms <= 5);
        let quick = Scenario::Fraud.steps(true).unwrap()[0];
        assert!(quick.duration_s + quick.warmup_s < 60);
        let args = quick.args("b:1", "t", "/o");
        assert!(args.windows(2).any(|w| w[0] == "--acks" && w[1] == "all"));
        assert!(args.windows(2).any(|w| w[0] == "--rate" && w[1] == "5000"));
    }

    #[test]
    fn throughput_climbs_and_replay_is_explained() {
        let steps = Scenario::Throughput.steps(false).unwrap();
        assert!(steps.windows(2).all(|w| w[0].mb_per_sec < w[1].mb_per_sec));
        assert!(steps.iter().all(|s| s.partitions == 64));
        assert!(
            steps.last().unwrap().mb_per_sec.unwrap() >= 320,
            "the ladder climbs past 160 MB/s, which Sluice and Kafka both held"
        );
        assert!(Scenario::Replay.steps(true).is_err());
        assert_eq!(
            Scenario::parse("partitions").unwrap().steps(false).unwrap()[0].partitions,
            10_000
        );
    }

    #[test]
    fn replay_fills_five_gb_or_two_hundred_mb() {
        let full = ReplayPlan::new(false);
        assert_eq!(full.partitions, 64);
        let bytes = full.records() * u64::from(full.record_bytes);
        assert!((5_000_000_000..5_300_000_000).contains(&bytes), "{bytes}");
        let quick = ReplayPlan::new(true);
        let bytes = quick.records() * u64::from(quick.record_bytes);
        assert!((200_000_000..220_000_000).contains(&bytes), "{bytes}");
        let fill = quick.fill();
        assert_eq!((fill.consumers, fill.warmup_s), (0, 0));
        let args = fill.args("b:1", "t", "/o");
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--drain-timeout-s" && w[1] == "300")
        );
        let replay = quick.replay_args("b:1", "t", "/o");
        assert!(
            replay
                .windows(2)
                .any(|w| w[0] == "--mode" && w[1] == "replay")
        );
    }
}
