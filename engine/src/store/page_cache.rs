//! [`PageCacheReads`]: ranged reads of a local-directory store served where they are called, when
//! the kernel's page cache holds the bytes.
//!
//! Every store call of the agent runs on the store runtime's thread ([`super::StoreRuntime`]), and
//! `object_store`'s local backend runs each file read on a thread of tokio's blocking pool after
//! zero-filling its buffer. So one GET of a window object from a directory store is three thread
//! hand-offs and a `memset` before the copy out of the page cache, where the bytes written moments
//! ago still are. A profile of one consumer reading 2 GB back from a directory store had the store
//! threads at about half of the agent's CPU (docs/benchmarks.md, "Reads from the page cache on
//! the calling core").
//!
//! This wrapper goes above the runtime and tries the read first on the caller's thread (a network
//! core) with `preadv2(RWF_NOWAIT)`: the kernel copies from the page cache, and refuses with
//! `EAGAIN` rather than wait for the disk. Anything else goes to the wrapped store exactly as
//! before, so errors and edge cases keep the backend's meaning: a page that is not cached, a
//! missing file, a range past the end of the file, a key that is not a plain path, or a read
//! larger than [`INLINE_READ_BYTES_MAX`] (whose copy would hold the core up). If the kernel or the
//! file system does not take the flag at all, every read goes to the wrapped store from then on.
//!
//! The cost on the caller's thread is an `open`, the copy and a `close`. Opening a file whose
//! directory entry or inode is not in the kernel's cache can wait for the disk, which the flag
//! does not cover; such a file's pages are seldom cached either. So after
//! [`COLD_READS_BEFORE_PAUSE`] reads in a row found the page cache cold, reads go to the wrapped
//! store for [`COLD_PAUSE_MS`], and then one read tries again: a replay of data the page cache no
//! longer holds pays one such `open` a second, not one per object. Only a read that got no byte
//! counts as cold. On ext4 here a refused read still starts the kernel's readahead of what it
//! missed (a file made cold and probed with `RWF_NOWAIT` was cached moments later), so a read
//! that stops partway has reached pages that are missing or still arriving in a file whose
//! first part was cached (5 of 9,084 window objects that a consumer had just read twice, in one
//! scan): not a sign that the cache is cold. Such a read goes to the wrapped store. Files are
//! opened with `O_NOATIME` (the agent owns them), so a read never updates the inode's access
//! time, which could wait for the file system's journal behind the windows' fsyncs.
//!
//! Each inline read is one synchronous copy of at most [`INLINE_READ_BYTES_MAX`]; a fetch that
//! reads many window objects at once makes them one after the other in one poll, as it then
//! copies its answer into the socket in one `sendmsg`.

use std::fmt;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::{ObjectInfo, ObjectStorage, StoreResult};

/// Largest read served on the caller's thread; larger ones go to the wrapped store. A window
/// object is at most about 1 MiB (the agent seals a window early at 1 MiB); a compacted object
/// is read in chunks of several MiB, whose copy (about a millisecond) would delay every other
/// connection of the core.
pub const INLINE_READ_BYTES_MAX: u64 = 1 << 20;

/// Cold reads in a row after which reads skip the inline attempt for [`COLD_PAUSE_MS`].
pub const COLD_READS_BEFORE_PAUSE: u64 = 8;

/// How long reads skip the inline attempt once [`COLD_READS_BEFORE_PAUSE`] found the page cache
/// cold (ms).
pub const COLD_PAUSE_MS: u64 = 1_000;

/// Called after each read served inline, with the instant it began and its length in bytes (the
/// agent counts these reads as the store's GETs).
pub type InlineReadHook = Arc<dyn Fn(Instant, usize) + Send + Sync>;

/// A local-directory store whose ranged reads are first tried from the page cache, inline.
pub struct PageCacheReads {
    /// The store's directory, as the local backend resolves keys under it.
    root: PathBuf,
    inner: Arc<dyn ObjectStorage>,
    hook: Option<InlineReadHook>,
    /// Cleared when the kernel refuses the flag itself: then every read goes to `inner`.
    supported: AtomicBool,
    /// Cleared when opening with `O_NOATIME` is refused (a file the agent's user does not own).
    noatime: AtomicBool,
    /// Inline attempts in a row that found the page cache cold.
    cold_in_a_row: AtomicU64,
    /// When reads may be tried inline again (ms since `born`).
    cold_until_ms: AtomicU64,
    /// [`COLD_PAUSE_MS`] unless a test sets it.
    cold_pause_ms: u64,
    born: Instant,
    inline_reads: AtomicU64,
    passed_on: AtomicU64,
}

impl fmt::Debug for PageCacheReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageCacheReads")
            .field("root", &self.root)
            .field("inner", &self.inner)
            .field("supported", &self.supported)
            .field("inline_reads", &self.inline_reads)
            .field("passed_on", &self.passed_on)
            .finish_non_exhaustive()
    }
}

impl PageCacheReads {
    /// Wraps `inner`, the store of the local directory `root` (`file://root`), with the root
    /// resolved as the local backend resolves it (symbolic links followed).
    pub fn new(root: impl AsRef<Path>, inner: Arc<dyn ObjectStorage>) -> PageCacheReads {
        let root = root.as_ref();
        PageCacheReads {
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
            inner,
            hook: None,
            supported: AtomicBool::new(true),
            noatime: AtomicBool::new(true),
            cold_in_a_row: AtomicU64::new(0),
            cold_until_ms: AtomicU64::new(0),
            cold_pause_ms: COLD_PAUSE_MS,
            born: Instant::now(),
            inline_reads: AtomicU64::new(0),
            passed_on: AtomicU64::new(0),
        }
    }

    /// Calls `hook` after each read served inline.
    pub fn with_hook(mut self, hook: InlineReadHook) -> PageCacheReads {
        self.hook = Some(hook);
        self
    }

    /// Sets how long reads skip the inline attempt after [`COLD_READS_BEFORE_PAUSE`] cold ones
    /// (default [`COLD_PAUSE_MS`]).
    pub fn with_cold_pause_ms(mut self, cold_pause_ms: u64) -> PageCacheReads {
        self.cold_pause_ms = cold_pause_ms;
        self
    }

    /// Reads served from the page cache on the caller's thread.
    pub fn inline_reads(&self) -> u64 {
        self.inline_reads.load(Ordering::Relaxed)
    }

    /// Reads that were tried inline and went to the wrapped store.
    pub fn passed_on(&self) -> u64 {
        self.passed_on.load(Ordering::Relaxed)
    }

    fn since_born_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// What an inline read found.
enum Inline {
    Read(Bytes),
    /// The range's first page is not in the page cache: the disk would be waited for.
    Cold,
    /// Anything else the wrapped store should answer (a missing file, a range past the end).
    PassOn,
    /// The kernel or the file system refuses `RWF_NOWAIT`.
    Unsupported,
}

/// Whether the local backend maps `key` to `root/key` unchanged: `/`-separated parts of ASCII
/// letters, digits, `.`, `_` and `-`, none empty, `.` or `..` (the backend percent-encodes other
/// characters, and its staging files end in `#`).
fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Opens `path` for reading, with `O_NOATIME` while `noatime` holds (cleared if refused).
fn open(path: &Path, noatime: &AtomicBool) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if noatime.load(Ordering::Relaxed) {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
        {
            Ok(file) => return Some(file),
            // Only the file's owner may ask for it: open as everyone else does from now on.
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                noatime.store(false, Ordering::Relaxed);
            }
            Err(_) => return None,
        }
    }
    std::fs::File::open(path).ok()
}

/// Reads `range` of the file at `path` if every byte of it is in the page cache.
fn read_cached(path: &Path, range: &Range<u64>, noatime: &AtomicBool) -> Inline {
    let Ok(len) = usize::try_from(range.end - range.start) else {
        return Inline::PassOn;
    };
    if libc::off_t::try_from(range.end).is_err() {
        return Inline::PassOn;
    }
    let Some(file) = open(path, noatime) else {
        return Inline::PassOn;
    };
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let wanted = len - buf.len();
        let spare = buf.spare_capacity_mut();
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: wanted,
        };
        // Below `range.end`, which fits `off_t` (checked above).
        let offset = libc::off_t::try_from(range.start + buf.len() as u64).unwrap_or(0);
        // SAFETY: `iov` points at `wanted` bytes of `buf`'s spare capacity (its capacity is `len`
        // and its length `len - wanted`), which nothing else references during the call; the
        // kernel writes at most `iov_len` bytes there. `file` stays open for the call.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        match usize::try_from(read) {
            // The end of the file before the range's end: the backend's answer.
            Ok(0) => return Inline::PassOn,
            Ok(read) => {
                let filled = buf.len() + read.min(wanted);
                // SAFETY: the kernel initialised `read` bytes (at most `wanted`) after the old
                // length, and `filled <= len <= capacity`.
                unsafe { buf.set_len(filled) };
            }
            Err(_) => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                // A kernel older than the flag (Linux 4.14), or a file system without it; EPERM
                // on a descriptor open for reading comes only from a filter (seccomp, an LSM).
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM) => return Inline::Unsupported,
                // Nothing read: the range's first page is not cached.
                Some(libc::EAGAIN) if buf.is_empty() => return Inline::Cold,
                // Part read: a page missing or still arriving partway through a file whose first
                // part was cached; the store thread reads it. Not a sign that the cache is cold.
                _ => return Inline::PassOn,
            },
        }
    }
    Inline::Read(Bytes::from(buf))
}

#[async_trait::async_trait]
impl ObjectStorage for PageCacheReads {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.inner.put_create(key, payload).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if self.supported.load(Ordering::Relaxed)
            && range.start < range.end
            && range.end - range.start <= INLINE_READ_BYTES_MAX
            && plain_key(key)
            && self.since_born_ms() >= self.cold_until_ms.load(Ordering::Relaxed)
        {
            let started = Instant::now();
            match read_cached(&self.root.join(key), &range, &self.noatime) {
                Inline::Read(bytes) => {
                    self.cold_in_a_row.store(0, Ordering::Relaxed);
                    self.inline_reads.fetch_add(1, Ordering::Relaxed);
                    if let Some(hook) = &self.hook {
                        hook(started, bytes.len());
                    }
                    return Ok(bytes);
                }
                Inline::Unsupported => {
                    if self.supported.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            root = %self.root.display(),
                            "the kernel refuses RWF_NOWAIT reads here: every read of the local store goes through the store thread"
                        );
                    }
                }
                Inline::Cold => {
                    let cold = self.cold_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                    if cold >= COLD_READS_BEFORE_PAUSE {
                        let until = self.since_born_ms().saturating_add(self.cold_pause_ms);
                        self.cold_until_ms.store(until, Ordering::Relaxed);
                    }
                }
                Inline::PassOn => {}
            }
            self.passed_on.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.get_range(key, range).await
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        self.inner.delete_many(keys).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::{ObjectStoreBackend, StoreErrorKind};

    fn store(dir: &Path, cold_pause_ms: u64) -> (PageCacheReads, Arc<AtomicU64>) {
        let backend: Arc<dyn ObjectStorage> = Arc::new(ObjectStoreBackend::local_dir(dir).unwrap());
        let hooked = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&hooked);
        let reads = PageCacheReads::new(dir, backend)
            .with_cold_pause_ms(cold_pause_ms)
            .with_hook(Arc::new(move |_, bytes| {
                counted.fetch_add(bytes as u64, Ordering::Relaxed);
            }));
        (reads, hooked)
    }

    /// A directory on the disk that holds the build (a tmpfs `TMPDIR` keeps every page cached,
    /// and `POSIX_FADV_DONTNEED` could not make a file cold there).
    fn disk_dir() -> tempfile::TempDir {
        let parent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        std::fs::create_dir_all(&parent).unwrap();
        tempfile::tempdir_in(parent).unwrap()
    }

    /// Writes `body` under `key` through `reads` (fsynced) and drops its pages from the cache.
    async fn write_cold(reads: &PageCacheReads, dir: &Path, key: &str, body: &[u8]) {
        use std::os::fd::AsRawFd;
        reads
            .put_create(key, vec![Bytes::copy_from_slice(body)])
            .await
            .unwrap();
        // Written with fsync, so the pages are clean and the kernel drops them when told to;
        // a page busy at that instant (locked, under writeback) is kept, so ask until the first
        // page is gone.
        let file = std::fs::File::open(dir.join(key)).unwrap();
        for _ in 0..100 {
            // SAFETY: plain integers and an open descriptor.
            let advised =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(advised, 0);
            if !page_cached(&file, 0) {
                return;
            }
            file.sync_all().unwrap();
        }
        panic!("the kernel keeps {key}'s first page cached");
    }

    /// Whether `file`'s page at `offset` (page-aligned, inside the file) is in the page cache
    /// (`mincore` of a mapping: no read, so no readahead either).
    fn page_cached(file: &std::fs::File, offset: libc::off_t) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared read-only mapping of one page of an open file (inside it), queried by
        // `mincore` into one byte and unmapped; nothing reads through it.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let map = libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut resident = 0u8;
            let queried = libc::mincore(map, page, &raw mut resident);
            libc::munmap(map, page);
            assert_eq!(queried, 0);
            resident & 1 == 1
        }
    }

    #[test]
    fn plain_keys_are_paths_under_the_root() {
        assert!(plain_key("data/00000000000000000042"));
        assert!(plain_key("log/0.ckpt-a_b"));
        for key in [
            "", "/a", "a/", "a//b", "a/../b", "./a", "a#1", "a b", "a%2F", "ä",
        ] {
            assert!(!plain_key(key), "{key:?}");
        }
    }

    #[tokio::test]
    async fn cached_ranges_are_read_inline_and_the_rest_as_before() {
        let dir = disk_dir();
        let (reads, hooked) = store(dir.path(), COLD_PAUSE_MS);
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        {
            reads
                .put_create("data/obj", vec![Bytes::from(body.clone())])
                .await
                .unwrap();
            // Just written: in the page cache.
            let got = reads.get_range("data/obj", 1_000..150_000).await.unwrap();
            assert_eq!(&got[..], &body[1_000..150_000]);
            assert_eq!(reads.inline_reads(), 1);
            assert_eq!(hooked.load(Ordering::Relaxed), 149_000);

            // Past the end: the backend's answer (the bytes up to the end), not an inline one.
            let got = reads.get_range("data/obj", 190_000..300_000).await.unwrap();
            assert_eq!(&got[..], &body[190_000..]);
            assert_eq!((reads.inline_reads(), reads.passed_on()), (1, 1));

            // Missing: the backend's NotFound.
            let error = reads.get_range("data/none", 0..10).await.unwrap_err();
            assert_eq!(error.kind(), StoreErrorKind::NotFound);
            assert_eq!(reads.passed_on(), 2);

            // Too large to copy on the caller's thread, and empty: the backend.
            let large: Vec<u8> = vec![7; (INLINE_READ_BYTES_MAX + 1) as usize];
            reads
                .put_create("data/large", vec![Bytes::from(large.clone())])
                .await
                .unwrap();
            let got = reads
                .get_range("data/large", 0..INLINE_READ_BYTES_MAX + 1)
                .await
                .unwrap();
            assert_eq!(got.len(), large.len());
            assert!(reads.get_range("data/obj", 5..5).await.is_err());
            assert_eq!((reads.inline_reads(), reads.passed_on()), (1, 2));
        }
    }

    #[tokio::test]
    async fn a_range_not_in_the_page_cache_is_read_by_the_backend() {
        let dir = disk_dir();
        let (reads, _) = store(dir.path(), 0);
        let body = vec![3u8; 512 * 1024];
        write_cold(&reads, dir.path(), "data/cold", &body).await;
        let got = reads
            .get_range("data/cold", 0..body.len() as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &body[..]);
        assert_eq!((reads.inline_reads(), reads.passed_on()), (0, 1));
        // The backend's read brought the pages back: the next read is inline.
        let got = reads
            .get_range("data/cold", 0..body.len() as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &body[..]);
        assert_eq!((reads.inline_reads(), reads.passed_on()), (1, 1));
    }

    #[tokio::test]
    async fn a_read_that_stops_partway_is_passed_on_without_counting_as_cold() {
        use std::os::fd::AsRawFd;
        let dir = disk_dir();
        let (reads, _) = store(dir.path(), 3_600_000);
        let body = vec![9u8; 512 * 1024];
        reads
            .put_create("data/warm", vec![Bytes::from(body.clone())])
            .await
            .unwrap();
        for n in 0..COLD_READS_BEFORE_PAUSE {
            let key = format!("data/half-{n}");
            // Written a page at a time, so that the page cache holds it in page-sized folios
            // (one large folio could not be dropped by halves), and synced.
            let path = dir.path().join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut file = std::fs::File::create(&path).unwrap();
            for page in body.chunks(4096) {
                std::io::Write::write_all(&mut file, page).unwrap();
            }
            file.sync_all().unwrap();
            // The first half stays cached, the second is dropped.
            let half = (body.len() / 2) as libc::off_t;
            let mut dropped = false;
            for _ in 0..100 {
                // SAFETY: plain integers and an open descriptor.
                let advised = unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), half, half, libc::POSIX_FADV_DONTNEED)
                };
                assert_eq!(advised, 0);
                let reader = std::fs::File::open(&path).unwrap();
                dropped = page_cached(&reader, 0) && !page_cached(&reader, half);
                if dropped {
                    break;
                }
                file.sync_all().unwrap();
            }
            assert!(dropped, "{key}: the first half cached, the second not");
            let got = reads.get_range(&key, 0..body.len() as u64).await.unwrap();
            assert_eq!(&got[..], &body[..]);
        }
        // Each read stopped at the dropped half and went to the backend, unless the readahead
        // that its first part started had brought the rest in before it asked again (then it was
        // inline; on a quiet machine none is).
        let inline = reads.inline_reads();
        assert_eq!(inline + reads.passed_on(), COLD_READS_BEFORE_PAUSE);
        // As many partial reads as would pause if they were cold: the next read is tried inline.
        reads.get_range("data/warm", 0..10).await.unwrap();
        assert_eq!(reads.inline_reads(), inline + 1);
    }

    #[tokio::test]
    async fn after_cold_reads_in_a_row_the_next_reads_skip_the_attempt() {
        let dir = disk_dir();
        // A pause no test run outlasts.
        let (reads, _) = store(dir.path(), 3_600_000);
        let body = vec![5u8; 256 * 1024];
        reads
            .put_create("data/warm", vec![Bytes::from(body.clone())])
            .await
            .unwrap();
        let cold_read = |n: u64| {
            let key = format!("data/cold-{n}");
            let reads = &reads;
            let dir = dir.path();
            let body = &body;
            async move {
                write_cold(reads, dir, &key, body).await;
                let got = reads.get_range(&key, 0..1_000).await.unwrap();
                assert_eq!(&got[..], &body[..1_000]);
            }
        };
        // Cold reads with a warm one between them: no pause.
        for n in 0..COLD_READS_BEFORE_PAUSE - 1 {
            cold_read(n).await;
        }
        reads.get_range("data/warm", 0..10).await.unwrap();
        assert_eq!(reads.inline_reads(), 1);
        for n in 0..COLD_READS_BEFORE_PAUSE {
            cold_read(100 + n).await;
        }
        let tried = 2 * COLD_READS_BEFORE_PAUSE;
        assert_eq!((reads.inline_reads(), reads.passed_on()), (1, tried - 1));
        // That many in a row: a cached range goes to the backend without an attempt.
        let got = reads
            .get_range("data/warm", 0..body.len() as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &body[..]);
        assert_eq!((reads.inline_reads(), reads.passed_on()), (1, tried - 1));
    }
}
