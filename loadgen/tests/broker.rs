//! Runs the `sluice-loadgen` binary against a real Kafka-compatible broker.
//!
//! Needs `SLUICE_LOADGEN_BOOTSTRAP` (for example `127.0.0.1:9092`, a broker started with
//! `scripts/kafka/run-kafka.sh 9092 /tmp/kafka`); without it each test prints SKIPPED and passes.
//! Every test uses a fresh topic, so it can run against a broker that already holds data.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn bootstrap(test: &str) -> Option<String> {
    match std::env::var("SLUICE_LOADGEN_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.is_empty() => Some(bootstrap),
        _ => {
            println!("SKIPPED {test}: set SLUICE_LOADGEN_BOOTSTRAP=host:port to run it against a broker");
            None
        }
    }
}

fn unique_topic(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("loadgen-{test}-{}-{nanos}", std::process::id())
}

/// Runs the binary with `arguments` plus bootstrap, topic and out dir; returns the summary.
fn run_loadgen(bootstrap: &str, topic: &str, out: &Path, arguments: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["--bootstrap", bootstrap, "--topic", topic, "--out"])
        .arg(out)
        .args(arguments)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed: {}\n{stderr}", output.status);
    assert!(stderr.contains("] sent "), "no progress line on stderr:\n{stderr}");
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// The footer's total count of a `.hgrm` file, after checking its header.
fn hgrm_total_count(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"), "{text}");
    let footer = text.lines().find(|line| line.starts_with("#[Max")).unwrap();
    footer.rsplit('=').next().unwrap().trim_end_matches(']').trim().parse().unwrap()
}

fn assert_ordered_percentiles(latency: &serde_json::Value) {
    let read = |name: &str| latency[name].as_u64().unwrap();
    assert!(read("min") >= 1);
    assert!(read("min") <= read("p50"));
    assert!(read("p50") <= read("p90") && read("p90") <= read("p99"));
    assert!(read("p99") <= read("p999") && read("p999") <= read("max"));
}

#[test]
fn measures_every_record_produced_and_consumed() {
    let Some(bootstrap) = bootstrap("measures_every_record_produced_and_consumed") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let topic = unique_topic("roundtrip");
    let summary = run_loadgen(
        &bootstrap,
        &topic,
        out.path(),
        &[
            "--partitions",
            "3",
            "--rate",
            "500",
            "--record-bytes",
            "512",
            "--keys",
            "uniform:10",
            "--acks",
            "all",
            "--compression",
            "lz4",
            "--duration-s",
            "3",
            "--warmup-s",
            "1",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--drain-timeout-s",
            "20",
        ],
    );
    let produce = &summary["produce"];
    // 500 records/s over 1 s of warm-up and 3 s measured: 2,000 intended, 1,500 measured.
    assert_eq!(produce["intended_records"], 2_000, "{summary:#}");
    assert_eq!(produce["acked_records"], 2_000, "{summary:#}");
    assert_eq!(produce["measured_records"], 1_500, "{summary:#}");
    assert_eq!(produce["error_records"], 0, "{summary:#}");
    assert_eq!(produce["unsent_records"], 0, "{summary:#}");
    assert_eq!(produce["unacked_records"], 0, "{summary:#}");
    assert_eq!(produce["latency_us"]["count"], 1_500);
    assert_ordered_percentiles(&produce["latency_us"]);
    let achieved = produce["achieved_records_per_sec"].as_f64().unwrap();
    assert!((400.0..=500.5).contains(&achieved), "achieved {achieved} records/s");

    let end_to_end = &summary["end_to_end"];
    assert_eq!(end_to_end["consumed_records"], 2_000, "{summary:#}");
    assert_eq!(end_to_end["measured_records"], 1_500, "{summary:#}");
    assert_eq!(end_to_end["missing_records"], 0);
    assert_eq!(end_to_end["undecodable_records"], 0);
    assert_ordered_percentiles(&end_to_end["latency_us"]);

    assert_eq!(hgrm_total_count(&out.path().join("produce.hgrm")), 1_500);
    assert_eq!(hgrm_total_count(&out.path().join("e2e.hgrm")), 1_500);
    assert_eq!(summary["settings"]["topic"], topic.as_str());
    assert_eq!(summary["settings"]["compression"], "lz4");
}

#[test]
fn produce_only_runs_with_every_codec() {
    let Some(bootstrap) = bootstrap("produce_only_runs_with_every_codec") else {
        return;
    };
    for codec in ["gzip", "snappy", "zstd"] {
        let out = tempfile::tempdir().unwrap();
        let topic = unique_topic(codec);
        let summary = run_loadgen(
            &bootstrap,
            &topic,
            out.path(),
            &[
                "--partitions",
                "2",
                "--mb-per-sec",
                "0.5",
                "--record-bytes",
                "1024",
                "--keys",
                "zipf:100:1.1",
                "--acks",
                "1",
                "--compression",
                codec,
                "--duration-s",
                "2",
                "--warmup-s",
                "0",
                "--consumers",
                "0",
                "--linger-ms",
                "1",
            ],
        );
        let produce = &summary["produce"];
        // 0.5 MB/s of 1 KiB records is 512 records/s: 1,024 in 2 s, all measured.
        assert_eq!(produce["measured_records"], 1_024, "{codec}: {summary:#}");
        assert_eq!(produce["error_records"], 0, "{codec}: {summary:#}");
        assert_eq!(summary["end_to_end"]["latency_us"]["count"], 0, "{codec}: no consumers, no e2e");
        assert_eq!(hgrm_total_count(&out.path().join("e2e.hgrm")), 0);
    }
}
