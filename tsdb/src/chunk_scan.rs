//! Background checksum scans of block chunk segment files.
//!
//! Every chunk read from a block is checked against its CRC-32C, which on a large range query
//! costs about a tenth of reading the block: the CRC is the first to touch the chunk's bytes.
//! Segment files never change once written, so each is instead checked once, whole: when
//! [`crate::chunks::ChunkReader`] opens a segment, it is queued here, and one low-priority
//! thread reads the file front to back with plain reads (its pages go through the page
//! cache, never into the process's mappings), walking its chunks one after another from the
//! header to the file's end and checking each chunk's CRC. Once a file passed, reads of its
//! chunks skip the check; until then, and for good when a file fails, every read checks, so a
//! damaged chunk still reports its corruption where it is read.
//!
//! A file is known by its identity ([`FileId`]: device, inode, size, modification and change
//! times), so a block opened again (every reload after a compaction opens all blocks) shares
//! the state of the same files, and a file written anew is scanned anew.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::chunks::SEGMENT_HEADER_SIZE;
use crate::encoding::{crc32c, uvarint};

/// The file waits for its scan, or the scan could not read it.
const PENDING: u8 = 0;
/// Every chunk of the file matched its CRC.
const VERIFIED: u8 = 1;
/// The scan found a chunk that does not: reads keep checking every chunk.
const FAILED: u8 = 2;

/// Bytes read at a time by a scan.
const READ_SIZE: usize = 1 << 20;

/// The checksum state of one segment file, shared by every reader of it.
#[derive(Debug)]
pub struct SegmentCheck {
    state: AtomicU8,
}

impl Default for SegmentCheck {
    fn default() -> Self {
        SegmentCheck {
            state: AtomicU8::new(PENDING),
        }
    }
}

impl SegmentCheck {
    /// Whether the whole file passed its scan, so its chunks need no check when read.
    #[inline]
    pub fn verified(&self) -> bool {
        self.state.load(Ordering::Relaxed) == VERIFIED
    }

    /// Whether the scan found a chunk whose CRC does not match.
    #[cfg(test)]
    pub fn failed(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FAILED
    }
}

/// What tells one file from another, and a rewritten file from the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(f: &File) -> std::io::Result<FileId> {
        let m = f.metadata()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// A file waiting for its scan.
struct Job {
    path: PathBuf,
    id: FileId,
    check: Arc<SegmentCheck>,
}

/// The states of the files open in this process, and the queue of the scanning thread.
struct Scanner {
    files: Mutex<HashMap<FileId, Arc<SegmentCheck>>>,
    queue: Mutex<Sender<Job>>,
}

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("ignis-chunk-scan".into())
            .spawn(move || scan_loop(rx));
        if let Err(e) = spawned {
            // Without the thread nothing is ever verified: every read keeps checking.
            tracing::warn!(err = %e, "could not start the chunk checksum scan thread");
        }
        Scanner {
            files: Mutex::new(HashMap::new()),
            queue: Mutex::new(tx),
        }
    })
}

/// The checksum state of the segment file `f` (at `path`): the one already known for the
/// same file, or a new one whose scan is queued.
pub(crate) fn check_of(path: &Path, f: &File) -> Arc<SegmentCheck> {
    let Ok(id) = FileId::of(f) else {
        return Arc::default();
    };
    let s = scanner();
    let mut files = s.files.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = files.get(&id) {
        return c.clone();
    }
    // Files no reader holds any more (deleted blocks, replaced files) are forgotten.
    files.retain(|_, c| Arc::strong_count(c) > 1);
    let check = Arc::new(SegmentCheck::default());
    files.insert(id, check.clone());
    let job = Job {
        path: path.to_path_buf(),
        id,
        check: check.clone(),
    };
    let _ = s.queue.lock().unwrap_or_else(|e| e.into_inner()).send(job);
    check
}

/// The scanning thread: runs the queued scans one by one, at the lowest CPU priority, and
/// logs what it did when the queue runs dry (and every ten seconds on a long run).
fn scan_loop(rx: Receiver<Job>) {
    lower_priority();
    while let Ok(first) = rx.recv() {
        let mut done = Tally::default();
        let mut logged = Instant::now();
        run(&first, &mut done);
        while let Ok(job) = rx.try_recv() {
            run(&job, &mut done);
            if logged.elapsed() > Duration::from_secs(10) {
                done.log("chunk files' checksums being scanned");
                logged = Instant::now();
            }
        }
        done.log("chunk files' checksums scanned");
    }
}

/// What [`scan_loop`] did since it last logged.
struct Tally {
    files: u64,
    bytes: u64,
    failed: u64,
    started: Instant,
}

impl Tally {
    fn log(&self, msg: &str) {
        if self.files > 0 {
            tracing::info!(
                files = self.files,
                mib = self.bytes >> 20,
                failed = self.failed,
                duration_ms = self.started.elapsed().as_millis() as u64,
                "{msg}"
            );
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            files: 0,
            bytes: 0,
            failed: 0,
            started: Instant::now(),
        }
    }
}

/// Scans one queued file and records its state (left pending when the file is gone or
/// changed since it was queued).
fn run(job: &Job, done: &mut Tally) {
    let f = match File::open(&job.path) {
        Ok(f) if FileId::of(&f).ok() == Some(job.id) => f,
        _ => {
            tracing::debug!(path = %job.path.display(), "chunk file gone or changed before its scan");
            return;
        }
    };
    match scan_file(&f, job.id.len) {
        Ok(()) => job.check.state.store(VERIFIED, Ordering::Relaxed),
        Err(ScanError::Io(e)) => {
            tracing::debug!(path = %job.path.display(), err = %e, "chunk file scan could not read it");
            return;
        }
        Err(ScanError::Bad { offset, reason }) => {
            job.check.state.store(FAILED, Ordering::Relaxed);
            done.failed += 1;
            tracing::warn!(
                path = %job.path.display(),
                offset,
                reason,
                "chunk file failed its checksum scan; its chunks are checked on every read"
            );
        }
    }
    done.files += 1;
    done.bytes += job.id.len;
}

/// Why a scan did not pass.
#[derive(Debug)]
enum ScanError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The chunk at `offset` is damaged, or the chunks do not fill the file.
    Bad { offset: u64, reason: String },
}

/// Checks that the chunks of the segment file `f` (`len` bytes) follow each other from the
/// header to the file's end, each with its CRC matching (layout in [`crate::chunks`]).
fn scan_file(f: &File, len: u64) -> Result<(), ScanError> {
    let mut buf = vec![0u8; READ_SIZE];
    // The file offset of the next chunk, and where `buf` starts.
    let mut pos = SEGMENT_HEADER_SIZE;
    while pos < len {
        let n = ((len - pos) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], pos).map_err(ScanError::Io)?;
        let at_end = pos + n as u64 == len;
        let mut at = 0usize;
        while at < n {
            let bad = |reason: &str| ScanError::Bad {
                offset: pos + at as u64,
                reason: reason.to_string(),
            };
            let rest = &buf[at..n];
            let Some((data_len, field)) = uvarint(rest) else {
                if at_end || rest.len() >= 10 {
                    return Err(bad("invalid chunk length"));
                }
                break;
            };
            let size = field as u64 + 1 + data_len + 4;
            if pos + at as u64 + size > len {
                return Err(bad("chunk runs past the end of the file"));
            }
            let size = size as usize;
            if size > rest.len() {
                if at == 0 {
                    // A chunk larger than the buffer: read it whole next time.
                    buf.resize(size, 0);
                }
                break;
            }
            let body = &rest[field..size - 4];
            let stored = u32::from_be_bytes(rest[size - 4..size].try_into().unwrap_or_default());
            if crc32c(body) != stored {
                return Err(bad("chunk checksum mismatch"));
            }
            at += size;
        }
        pos += at as u64;
    }
    Ok(())
}

/// Puts the calling thread at the lowest CPU priority (Linux: `nice` is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: `setpriority` on the calling thread's own id only changes its nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Waits until every segment of `checks` has left the pending state (tests; at most `limit`).
#[cfg(test)]
pub(crate) fn wait_scanned(checks: &[Arc<SegmentCheck>], limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if checks
            .iter()
            .all(|c| c.state.load(Ordering::Relaxed) != PENDING)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::Encoding;
    use crate::chunks::ChunkWriter;

    fn segment_with(chunks: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::new(&cdir).unwrap();
        let refs = chunks
            .iter()
            .map(|c| w.write_chunk(Encoding::Xor, c).unwrap())
            .collect();
        w.close().unwrap();
        (dir, cdir.join("000001"), refs)
    }

    fn scan(path: &Path) -> Result<(), ScanError> {
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len();
        scan_file(&f, len)
    }

    /// Chunks of every size, some larger than the read buffer, some across its edges.
    #[test]
    fn a_sound_file_passes_whatever_its_chunk_sizes() {
        let chunks: Vec<Vec<u8>> = (0..40u32)
            .map(|i| {
                let n = match i % 5 {
                    0 => 3,
                    1 => 200,
                    2 => READ_SIZE / 3 + i as usize,
                    3 => READ_SIZE + 7,
                    _ => 70_000,
                };
                (0..n).map(|j| (j as u32 ^ i) as u8).collect()
            })
            .collect();
        let (_dir, path, _) = segment_with(&chunks);
        scan(&path).unwrap();
    }

    #[test]
    fn a_damaged_chunk_or_trailing_garbage_fails_the_file_at_its_offset() {
        let chunks: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 100 + i as usize]).collect();
        let (_dir, path, refs) = segment_with(&chunks);
        let good = std::fs::read(&path).unwrap();
        let at = crate::chunks::split_chunk_ref(refs[17]).1;
        let mut bytes = good.clone();
        bytes[at as usize + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match scan(&path) {
            Err(ScanError::Bad { offset, reason }) => {
                assert_eq!((offset, reason.as_str()), (at, "chunk checksum mismatch"))
            }
            other => panic!("{other:?}"),
        }
        // Zeros after the last chunk (a preallocated file never cut to size).
        let mut bytes = good.clone();
        bytes.extend([0u8; 64]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            matches!(scan(&path), Err(ScanError::Bad { offset, .. }) if offset == good.len() as u64)
        );
        // A last chunk cut short.
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(scan(&path), Err(ScanError::Bad { .. })));
    }

    /// The same file opened twice shares one state; a file written anew gets its own.
    #[test]
    fn states_are_shared_by_file_identity() {
        let (_dir, path, _) = segment_with(&[vec![1, 2, 3], vec![4; 500]]);
        let open = |p: &Path| check_of(p, &File::open(p).unwrap());
        let a = open(&path);
        let b = open(&path);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(wait_scanned(
            std::slice::from_ref(&a),
            Duration::from_secs(20)
        ));
        assert!(a.verified());
        // Rewritten with one byte changed: a new file to the scanner, and it fails.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0x80;
        let moved = path.with_extension("new");
        std::fs::write(&moved, &bytes).unwrap();
        std::fs::rename(&moved, &path).unwrap();
        let c = open(&path);
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(wait_scanned(
            std::slice::from_ref(&c),
            Duration::from_secs(20)
        ));
        assert!(c.failed() && !c.verified());
    }
}
