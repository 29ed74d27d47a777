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
/// thread's heap, freed buffers stay in the allocator and are reused: not handed back to the
/// kernel between uses.
///
/// What stays is kept per arena, and glibc makes up to eight arenas per CPU, one for each new
/// thread that allocates while there are fewer. On a local directory the store runtimes'
/// threads are many (`object_store` runs every call on a blocking thread), and each arena kept
/// its own freed buffers: at the fraud load on the directory store the agent's RSS reached
/// 1,320 MiB in 10 minutes with a block cache of 512 MiB. So the arenas are capped at the online
/// CPUs + 2: a network core on every online CPU (the default; `cpus` is not known yet, this runs
/// before the configuration is read), the metadata core and the main thread; threads beyond that
/// reuse the existing arenas. At that load RSS after 300 s fell from 986–1,112 to 758–851 MiB
/// (docs/benchmarks.md, "Soak on the directory store"). What the arenas keep free is given back
/// on a schedule by `sluice_server::memory::Trimmer` (`allocator_trim_interval_ms`). An operator
/// who sets `GLIBC_TUNABLES` with malloc settings keeps theirs.
fn keep_large_buffers_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|value| value.contains("malloc"));
        if !tuned {
            // The online CPUs, as the agent places its network cores (not
            // `available_parallelism`, which follows this process's affinity and quota). When
            // they cannot be read, `serve` refuses to start; one is assumed here.
            let cpus = sluice_server::net::agent::online_cpus().map_or(1, |cpus| cpus.len().max(1));
            let arenas = libc::c_int::try_from(cpus.saturating_add(2)).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only changes allocator parameters; it runs before any other thread.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}
