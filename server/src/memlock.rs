//! Locked-memory budget of the glommio executors, checked before any executor starts.
//!
//! glommio registers each executor's io memory with its io_uring rings, and the kernel charges
//! registered buffers to `RLIMIT_MEMLOCK`: once per ring, and glommio registers the same buffer
//! with three rings (main, latency, poll). When the charge does not fit, glommio only logs a
//! warning and falls back to unregistered buffers, so an agent would start and be quietly slower
//! than configured; below 512 KiB it refuses to start with a terse error. Both are replaced by
//! one clear message here: the limit, the current value, what this configuration needs, and how
//! to fix it. The arithmetic is a pure function ([`check`]) tested with synthetic limits.
//!
//! Measured on kernel 6.18: three executors with 512 KiB each pin 4608 KiB (`VmPin`), exactly
//! 3 × 3 × 512 KiB. The kernel charges the user, not the process, so other processes of the same
//! user that pin memory eat into the same limit; this check cannot see them.
//!
//! Kernels before 5.12 also charge the rings themselves; [`RING_OVERHEAD_BYTES_PER_EXECUTOR`]
//! keeps room for that, so the same check holds on older machines.

/// Rings per executor that glommio registers its io memory with (main, latency, poll).
pub const REGISTERED_RINGS_PER_EXECUTOR: u64 = 3;
/// Allowance per executor for ring memory charged on pre-5.12 kernels (3 rings of depth 128).
pub const RING_OVERHEAD_BYTES_PER_EXECUTOR: u64 = 192 * 1024;
/// glommio refuses to start an executor when the limit is below this, whatever it would use.
pub const GLOMMIO_MEMLOCK_BYTES_MIN: u64 = 512 * 1024;
/// glommio rounds io memory up to a page and to at least 64 KiB.
const IO_MEMORY_BYTES_FLOOR: u64 = 64 * 1024;
const PAGE_BYTES: u64 = 4096;

/// The soft `RLIMIT_MEMLOCK` of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemlockLimit {
    Unlimited,
    Bytes(u64),
}

impl std::fmt::Display for MemlockLimit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unlimited => formatter.write_str("unlimited"),
            Self::Bytes(bytes) => write!(formatter, "{bytes} bytes ({} KiB)", bytes / 1024),
        }
    }
}

/// The configuration needs more locked memory than the process may lock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "RLIMIT_MEMLOCK (locked memory) is {limit}, but {executors} glommio executors with \
     io_memory_bytes = {io_memory_bytes} need {needed_bytes} bytes ({needed_kib} KiB). Raise the \
     limit (shell: `ulimit -l {needed_kib}` or `ulimit -l unlimited`; systemd: \
     `LimitMEMLOCK={needed_bytes}` or `infinity`; docker: `--ulimit memlock={needed_bytes}`; \
     /etc/security/limits.conf: `memlock`), or lower `cpus` (fewer executors) or `io_memory_bytes`.",
    needed_kib = needed_bytes.div_ceil(1024)
)]
pub struct MemlockError {
    pub limit: MemlockLimit,
    pub executors: u64,
    pub io_memory_bytes: u64,
    pub needed_bytes: u64,
}

/// Locked bytes that `executors` executors with `io_memory_bytes` each need.
pub fn needed_bytes(executors: u64, io_memory_bytes: u64) -> u64 {
    let io_memory_bytes = io_memory_bytes
        .max(IO_MEMORY_BYTES_FLOOR)
        .div_ceil(PAGE_BYTES)
        .saturating_mul(PAGE_BYTES);
    let per_executor = io_memory_bytes
        .saturating_mul(REGISTERED_RINGS_PER_EXECUTOR)
        .saturating_add(RING_OVERHEAD_BYTES_PER_EXECUTOR);
    per_executor
        .saturating_mul(executors)
        .max(GLOMMIO_MEMLOCK_BYTES_MIN)
}

/// Checks the need against `limit`.
pub fn check(
    limit: MemlockLimit,
    executors: u64,
    io_memory_bytes: u64,
) -> Result<(), MemlockError> {
    let needed = needed_bytes(executors, io_memory_bytes);
    match limit {
        MemlockLimit::Unlimited => Ok(()),
        MemlockLimit::Bytes(bytes) if needed <= bytes => Ok(()),
        MemlockLimit::Bytes(_) => Err(MemlockError {
            limit,
            executors,
            io_memory_bytes,
            needed_bytes: needed,
        }),
    }
}

/// Reads the soft `RLIMIT_MEMLOCK` of this process.
pub fn current_limit() -> std::io::Result<MemlockLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes into the struct we pass and keeps no pointer to it.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        MemlockLimit::Unlimited
    } else {
        MemlockLimit::Bytes(limit.rlim_cur)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn default_configuration_fits_this_machines_8_mib_with_three_executors() {
        // Two network cores plus the metadata core, default io memory (512 KiB).
        assert!(check(MemlockLimit::Bytes(8 * MIB), 3, 512 * 1024).is_ok());
    }

    #[test]
    fn need_grows_with_executors_and_io_memory() {
        assert_eq!(
            needed_bytes(1, MIB),
            3 * MIB + RING_OVERHEAD_BYTES_PER_EXECUTOR
        );
        assert_eq!(needed_bytes(4, MIB), 4 * needed_bytes(1, MIB));
        assert!(needed_bytes(1, 2 * MIB) > needed_bytes(1, MIB));
        // Rounded like glommio: at least 64 KiB, whole pages.
        assert_eq!(needed_bytes(2, 1), needed_bytes(2, 64 * 1024));
        assert_eq!(needed_bytes(2, 64 * 1024 + 1), needed_bytes(2, 68 * 1024));
        assert!(needed_bytes(2, 68 * 1024) > needed_bytes(2, 64 * 1024));
        assert_eq!(
            needed_bytes(u64::MAX, u64::MAX),
            u64::MAX,
            "saturates, never wraps"
        );
        // Never below glommio's own floor.
        assert_eq!(needed_bytes(1, 64 * 1024), GLOMMIO_MEMLOCK_BYTES_MIN);
    }

    #[test]
    fn too_low_a_limit_is_refused_with_a_message_that_says_how_to_fix_it() {
        let error = check(MemlockLimit::Bytes(8 * MIB), 16, 10 * MIB).unwrap_err();
        assert_eq!(error.needed_bytes, needed_bytes(16, 10 * MIB));
        let message = error.to_string();
        for expected in [
            "RLIMIT_MEMLOCK",
            "8388608 bytes",
            &error.needed_bytes.to_string(),
            "ulimit -l",
            "LimitMEMLOCK=",
            "--ulimit memlock=",
            "cpus",
            "io_memory_bytes",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in {message}"
            );
        }
    }

    #[test]
    fn exact_fit_passes_and_one_byte_less_fails() {
        let needed = needed_bytes(2, MIB);
        assert!(check(MemlockLimit::Bytes(needed), 2, MIB).is_ok());
        assert!(check(MemlockLimit::Bytes(needed - 1), 2, MIB).is_err());
        assert!(check(MemlockLimit::Unlimited, 1000, 1 << 30).is_ok());
    }

    #[test]
    fn current_limit_is_readable() {
        // The value depends on the machine; reading it must work.
        current_limit().unwrap();
    }
}
