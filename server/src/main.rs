//! The `sluice` binary: sets up logging, parses the command line, runs the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_large_buffers_mapped();
    // `SLUICE_LOG` (tracing's filter syntax) and `SLUICE_LOG_FORMAT` (`text` or `json`).
    if let Err(message) = sluice_server::lifecycle::init_logging() {
        eprintln!("sluice: {message}");
        return ExitCode::FAILURE;
    }
    sluice_server::cli::run(sluice_server::cli::Cli::parse())
}

/// The agent's large buffers — GET bodies of 1–16 MiB that become block-cache chunks, flush
/// windows — are allocated and freed all the time. glibc serves each allocation above its mmap
/// threshold (128 KiB at first, raised as such blocks are freed, at most 32 MiB) with a fresh
/// `mmap` and gives it back with `munmap` when freed, so the next one faults in every 4 KiB page
/// again: in a replay from the store a quarter of the thread that receives GET bodies went to page
/// faults. With the threshold fixed at its maximum and a trim threshold above the size of a
/// thread's heap, freed buffers stay in the allocator and are reused. Memory is still bounded by
/// what the agent holds at its peak (the block cache's budget, the windows in flight); it is just
/// not handed back to the kernel between uses. An operator who sets `GLIBC_TUNABLES` with malloc
/// settings keeps theirs.
fn keep_large_buffers_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|value| value.contains("malloc"));
        if !tuned {
            // SAFETY: mallopt only changes allocator parameters; it runs before any other thread.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
            }
        }
    }
}
