//! Time a process's threads spent runnable but waiting for a CPU (`run_delay` in
//! `/proc/<pid>/task/<tid>/schedstat`). On a shared 2-core machine this separates "the broker was
//! slow" from "the broker was ready and the machine ran something else": a latency tail that comes
//! with seconds of run delay is the machine's, not the broker's.

/// Sum of every thread's run delay so far, in seconds (`None` if the process is gone or the
/// kernel keeps no schedstats). Threads that ended before the call are not counted, so take
/// differences over spans in which the thread set is stable (a broker's executors are).
pub fn run_delay_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total_ns: u64 = 0;
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(delay) = run_delay_ns(&text) {
            total_ns = total_ns.saturating_add(delay);
            any = true;
        }
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "nanoseconds of a run, far below 2^52"
    )]
    any.then(|| total_ns as f64 / 1e9)
}

/// The second field of a schedstat line: `<on-cpu ns> <run-delay ns> <timeslices>`.
fn run_delay_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_delay_field() {
        assert_eq!(run_delay_ns("123456 789 10\n"), Some(789));
        assert_eq!(run_delay_ns("123456"), None);
        assert_eq!(run_delay_ns("a b c"), None);
        assert!(run_delay_seconds(std::process::id()).is_some_and(|s| s >= 0.0));
        assert!(run_delay_seconds(u32::MAX).is_none());
    }
}
