//! Runs the `sluice-loadgen` binary against a real Kafka-compatible broker.
//!
//! Needs `SLUICE_LOADGEN_BOOTSTRAP` (for example `127.0.0.1:9092`, a broker started with
//! `scripts/kafka/run-kafka.sh 9092 /tmp/kafka`), so each test is `#[ignore]`d: `cargo test` lists it
//! as ignored rather than passing it unrun, and `cargo test -p sluice-loadgen --test broker --
//! --ignored` with the variable set runs it (without the variable it then fails, saying so).
//! Every test uses a fresh topic, so it can run against a broker that already holds data.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The broker under test; panics naming the variable when it is not set.
fn bootstrap(test: &str) -> String {
    match std::env::var("SLUICE_LOADGEN_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.is_empty() => bootstrap,
        _ => panic!("{test}: set SLUICE_LOADGEN_BOOTSTRAP=host:port to run it against a broker"),
    }
}

fn unique_topic(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
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
    assert!(
        output.status.success(),
        "loadgen failed: {}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("] sent "),
        "no progress line on stderr:\n{stderr}"
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// The footer's total count of a `.hgrm` file, after checking its header.
fn hgrm_total_count(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
        "{text}"
    );
    let footer = text.lines().find(|line| line.starts_with("#[Max")).unwrap();
    footer
        .rsplit('=')
        .next()
        .unwrap()
        .trim_end_matches(']')
        .trim()
        .parse()
        .unwrap()
}

fn assert_ordered_percentiles(latency: &serde_json::Value) {
    let read = |name: &str| latency[name].as_u64().unwrap();
    assert!(read("min") >= 1);
    assert!(read("min") <= read("p50"));
    assert!(read("p50") <= read("p90") && read("p90") <= read("p99"));
    assert!(read("p99") <= read("p999") && read("p999") <= read("max"));
}

#[test]
#[ignore = "needs a broker: SLUICE_LOADGEN_BOOTSTRAP=host:port"]
fn measures_every_record_produced_and_consumed() {
    let bootstrap = bootstrap("measures_every_record_produced_and_consumed");
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
    assert!(
        (400.0..=500.5).contains(&achieved),
        "achieved {achieved} records/s"
    );

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
#[ignore = "needs a broker: SLUICE_LOADGEN_BOOTSTRAP=host:port"]
fn produce_only_runs_with_every_codec() {
    let bootstrap = bootstrap("produce_only_runs_with_every_codec");
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
        assert_eq!(
            summary["end_to_end"]["latency_us"]["count"], 0,
            "{codec}: no consumers, no e2e"
        );
        assert_eq!(hgrm_total_count(&out.path().join("e2e.hgrm")), 0);
    }
}

#[test]
#[ignore = "needs a broker: SLUICE_LOADGEN_BOOTSTRAP=host:port"]
fn replay_reads_a_filled_topic_to_its_end_and_verifies_it() {
    let bootstrap = bootstrap("replay_reads_a_filled_topic_to_its_end_and_verifies_it");
    let fill_out = tempfile::tempdir().unwrap();
    let topic = unique_topic("replay");
    // Fill: 4 partitions, 3,000 records of 1 KiB as fast as the client sends (the schedule is
    // far ahead of any broker), produce only.
    let fill = run_loadgen(
        &bootstrap,
        &topic,
        fill_out.path(),
        &[
            "--partitions",
            "4",
            "--rate",
            "3000",
            "--duration-s",
            "1",
            "--warmup-s",
            "0",
            "--consumers",
            "0",
            "--drain-timeout-s",
            "30",
        ],
    );
    assert_eq!(fill["produce"]["acked_records"], 3_000, "{fill:#}");
    let run_id = format!("{:08x}", fill["run_id"].as_u64().unwrap());

    let replay_out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--mode",
            "replay",
            "--consumers",
            "2",
        ])
        .args(["--replay-timeout-s", "60", "--out"])
        .arg(replay_out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "replay failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(replay_out.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    let replay = &summary["replay"];
    assert_eq!(summary["mode"], "replay");
    assert_eq!(replay["partitions"], 4, "{summary:#}");
    assert_eq!(replay["records_expected"], 3_000, "{summary:#}");
    assert_eq!(replay["records_read"], 3_000, "{summary:#}");
    assert_eq!(replay["value_bytes_read"], 3_000 * 1_024, "{summary:#}");
    assert_eq!(replay["offset_gaps"], 0);
    assert_eq!(replay["complete"], true);
    assert!(replay["time_to_first_record_ms"].as_f64().unwrap() >= 0.0);
    assert!(replay["mb_per_sec"].as_f64().unwrap() > 0.0);
    let runs = replay["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{summary:#}");
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["distinct_sequences"], 3_000);
    assert_eq!(runs[0]["sequence_holes"], 0);

    // A replay of a topic that does not exist fails (it is not created) rather than reading nothing.
    let missing = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &unique_topic("absent"),
            "--mode",
            "replay",
            "--out",
        ])
        .arg(replay_out.path().join("absent"))
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "a missing topic must fail the replay"
    );
}
