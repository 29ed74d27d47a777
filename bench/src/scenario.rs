//! Scenarios: the load-generator settings of each run.
//!
//! A scenario is one or more *steps* (load-generator runs) per target. `throughput` is a ladder of
//! rates, climbed until a step misses its rate or its produce P99 passes 1 s: the last step that
//! held is the "highest sustained MB/s". `--quick` shortens every step so a scenario finishes in
//! about a minute per target (CI smoke test); its numbers are not headline numbers.

use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fraud,
    Throughput,
    Partitions,
    Replay,
    /// Consumer groups; driven by `crate::groups`, not by load-generator steps.
    Groups,
}

impl Scenario {
    pub fn parse(name: &str) -> Option<Scenario> {
        match name {
            "fraud" => Some(Scenario::Fraud),
            "throughput" => Some(Scenario::Throughput),
            "partitions" => Some(Scenario::Partitions),
            "replay" => Some(Scenario::Replay),
            "groups" => Some(Scenario::Groups),
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
        }
    }

    /// The load-generator runs, in order; `Err` explains a scenario the harness cannot run yet.
    pub fn steps(self, quick: bool) -> Result<Vec<Load>, String> {
        let (duration_s, warmup_s) = if quick { (15, 5) } else { (60, 10) };
        let fraud = Load {
            partitions: 12,
            records_per_sec: Some(5_000),
            mb_per_sec: None,
            record_bytes: 1024,
            linger_ms: 5,
            duration_s,
            warmup_s,
            consumers: 1,
        };
        match self {
            Scenario::Fraud => Ok(vec![fraud]),
            Scenario::Throughput => {
                let ladder: &[u64] = if quick {
                    &[5, 20]
                } else {
                    &[5, 10, 20, 40, 80, 160]
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
            Scenario::Replay => Err(
                "sluice-loadgen has no read-from-offset-0 mode yet; replay needs \
                 a consumer that reads existing history (add `--from-beginning` to loadgen)"
                    .to_owned(),
            ),
            Scenario::Groups => {
                Err("runs simulated group members, not load-generator steps".to_owned())
            }
        }
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
}

/// Upper bound on waiting for the load generator after its schedule ends.
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
            DRAIN_TIMEOUT_S.to_string(),
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
        u64::from(self.duration_s + self.warmup_s + DRAIN_TIMEOUT_S) + 60
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
        assert!(Scenario::Replay.steps(true).is_err());
        assert_eq!(
            Scenario::parse("partitions").unwrap().steps(false).unwrap()[0].partitions,
            10_000
        );
    }
}
