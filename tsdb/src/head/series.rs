//! One in-memory series of the head ([`MemSeries`]) and Prometheus's chunk cutting rule.
//!
//! A series keeps its labels as interned symbol ids, the open XOR chunk it appends to, the full
//! chunks waiting to be written to the chunk store, and for every stored chunk only a small
//! [`MmappedChunk`] (store reference, time range). A cut chunk waits in its series until the
//! head writes a batch of them ([`super::waiting`]), so that the store's files hold the chunks
//! of one metric together rather than in the order they were cut. A chunk is cut:
//!
//! * at the end of the chunk range: the first sample of a chunk fixes its deadline to the next
//!   multiple of the chunk range (2h), so chunks never straddle a block boundary;
//! * when the chunk holds 30 samples (a quarter of 120), the deadline is moved earlier so that
//!   the rest of the range is split into chunks of about 120 samples at the rate seen so far
//!   (`start + (deadline - start) / ((deadline - start) / (4 (cur - start + 1)))`);
//! * at 240 samples whatever the prediction said (the rate went up).

use parking_lot::Mutex;

use crate::chunkenc::{
    Encoding, SeekMark, XorAppender, XorChunk, XorCursor, TARGET_SAMPLES_PER_CHUNK,
};
use crate::Result;

use super::chunk_store::ChunkStore;

/// Bit of [`MemSeries::pending`] set (from 0, atomically) when truncation removes the series.
pub const REMOVED: u32 = 1 << 31;

/// A full chunk of a series, stored in the chunk store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmappedChunk {
    /// Reference in the chunk store.
    pub chunk_ref: u64,
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
}

impl MmappedChunk {
    /// The chunk as read: its time range with its bytes `data` from the chunk store.
    pub fn with_data(&self, data: crate::querier::ChunkData) -> crate::querier::ChunkMeta {
        crate::querier::ChunkMeta {
            min_time: self.min_time,
            max_time: self.max_time,
            encoding: Encoding::Xor,
            data,
        }
    }
}

/// The open chunk of a series.
pub struct HeadChunk {
    /// The encoder with the chunk bytes.
    pub app: XorAppender,
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp (`i64::MIN` while empty).
    pub max_time: i64,
    /// Where a reader can start decoding instead of at the first sample: the decoder's state
    /// after the newest and the one before of every [`SEEK_MARK_EVERY`]th sample, newest
    /// first. A query at the newest data (an instant query's lookback, a recording rule)
    /// seeks to a point a few minutes back: it decodes from the mark before it, not from the
    /// chunk's first sample (about 75 samples fewer on average at a 15 s interval).
    pub marks: [Option<SeekMark>; 2],
}

/// Samples between two seek marks of an open chunk ([`HeadChunk::marks`]). With two marks
/// kept, the older one is at least this many samples behind the newest sample.
pub const SEEK_MARK_EVERY: usize = 32;

impl HeadChunk {
    /// The newest seek mark before `t` as a cursor over the chunk's bytes as they are now.
    pub fn mark_before(&self, t: i64) -> Option<XorCursor> {
        let total = u16::try_from(self.app.num_samples()).ok()?;
        self.marks
            .iter()
            .flatten()
            .find(|m| m.t(self.min_time) < t)
            .map(|m| m.cursor(self.min_time, total))
    }
}

/// A full chunk of a series waiting to be written to the chunk store (see [`super::waiting`]).
pub struct WaitingChunk {
    /// The chunk's bytes, header included, copied out of the appender's larger buffer.
    pub bytes: Box<[u8]>,
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
}

/// Mutable state of a series, behind its lock.
#[derive(Default)]
pub struct SeriesData {
    /// Full chunks in the chunk store, in time order.
    pub mmapped: Vec<MmappedChunk>,
    /// Full chunks not yet in the chunk store, in time order, all newer than `mmapped`'s.
    pub waiting: Vec<WaitingChunk>,
    /// The chunk being appended to.
    pub head: Option<HeadChunk>,
    /// Timestamp at which the open chunk is cut.
    pub next_at: i64,
}

/// A series of the head.
pub struct MemSeries {
    /// Stable series reference.
    pub sref: u64,
    /// Label pairs as symbol ids: name, value, name, value… sorted by name.
    pub lset: Box<[u32]>,
    /// Whether the series record has been written to the WAL.
    pub logged: std::sync::atomic::AtomicBool,
    /// Number of appenders holding uncommitted samples for it (kept from garbage collection),
    /// plus [`REMOVED`] once truncation has removed it from the head.
    pub pending: std::sync::atomic::AtomicU32,
    /// Chunks and cutting state.
    pub data: Mutex<SeriesData>,
}

/// An appender over a new chunk with a small initial buffer (most series hold few samples).
fn new_appender() -> XorAppender {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&[0, 0]);
    XorChunk::from_bytes(b).appender().unwrap_or_default()
}

/// End of the chunk range holding `t`.
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width + width
}

/// Predicted end of a chunk started at `start`, a quarter full at `cur`, that must end by `max`,
/// so the rest of the range splits into equally filled chunks (integer arithmetic, as
/// Prometheus 2.42's `computeChunkEndTime`).
pub fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let a = (max - start) / ((cur - start + 1) * 4);
    if a == 0 {
        return max;
    }
    start + (max - start) / a
}

impl SeriesData {
    /// Timestamp of the newest sample, if any.
    pub fn max_time(&self) -> Option<i64> {
        match &self.head {
            Some(h) if h.max_time != i64::MIN => Some(h.max_time),
            _ => self.last_full_max_time(),
        }
    }

    /// Timestamp of the newest sample of the full chunks, if any.
    fn last_full_max_time(&self) -> Option<i64> {
        match self.waiting.last() {
            Some(w) => Some(w.max_time),
            None => self.mmapped.last().map(|c| c.max_time),
        }
    }

    /// Timestamp of the oldest sample, if any.
    pub fn min_time(&self) -> Option<i64> {
        match (self.mmapped.first(), self.waiting.first()) {
            (Some(c), _) => Some(c.min_time),
            (None, Some(w)) => Some(w.min_time),
            (None, None) => self
                .head
                .as_ref()
                .filter(|h| h.max_time != i64::MIN)
                .map(|h| h.min_time),
        }
    }

    /// Value of the newest sample of the open chunk, if it has one.
    pub fn last_value(&self) -> Option<f64> {
        self.head
            .as_ref()
            .filter(|h| h.app.num_samples() > 0)
            .map(|h| h.app.last_v())
    }

    /// Appends an in-order sample, cutting chunks as Prometheus does (a cut chunk goes to
    /// `waiting`). Returns `false` and drops the sample when it is not newer than the series'
    /// last sample.
    pub fn append(&mut self, t: i64, v: f64, chunk_range: i64) -> bool {
        if self.head.is_none() {
            if self.last_full_max_time().is_some_and(|m| m >= t) {
                return false;
            }
            self.cut(t, chunk_range);
        }
        let Some(h) = self.head.as_ref() else {
            return false;
        };
        if h.max_time >= t {
            return false;
        }
        let n = h.app.num_samples();
        if n == 0 {
            self.next_at = range_for_timestamp(t, chunk_range);
            if let Some(h) = self.head.as_mut() {
                h.min_time = t;
            }
        } else if n == TARGET_SAMPLES_PER_CHUNK / 4 {
            self.next_at = compute_chunk_end_time(h.min_time, h.max_time, self.next_at);
        }
        if n > 0 && (t >= self.next_at || n >= TARGET_SAMPLES_PER_CHUNK * 2) {
            self.cut(t, chunk_range);
        }
        if let Some(h) = self.head.as_mut() {
            h.app.append(t, v);
            h.max_time = t;
            if h.app.num_samples().is_multiple_of(SEEK_MARK_EVERY) {
                h.marks = [h.app.seek_mark(h.min_time), h.marks[0]];
            }
        }
        true
    }

    /// Closes the open chunk (if it has samples) and opens a new one at `t`.
    fn cut(&mut self, t: i64, chunk_range: i64) {
        self.close_open();
        self.head = Some(HeadChunk {
            app: new_appender(),
            min_time: t,
            max_time: i64::MIN,
            marks: [None; 2],
        });
        self.next_at = range_for_timestamp(t, chunk_range);
    }

    /// Moves the open chunk to `waiting` if it holds samples; it stays open otherwise.
    pub fn close_open(&mut self) {
        if let Some(h) = self.head.take_if(|h| h.app.num_samples() > 0) {
            self.waiting.push(WaitingChunk {
                bytes: h.app.bytes().into(),
                min_time: h.min_time,
                max_time: h.max_time,
            });
        }
    }

    /// Writes the waiting chunks to the store, oldest first. On an error the chunks not
    /// written stay waiting.
    pub fn store_waiting(&mut self, sref: u64, store: &dyn ChunkStore) -> Result<()> {
        let mut written = 0;
        let mut res = Ok(());
        for w in &self.waiting {
            match store.write(sref, w.min_time, w.max_time, Encoding::Xor, &w.bytes) {
                Ok(chunk_ref) => self.mmapped.push(MmappedChunk {
                    chunk_ref,
                    min_time: w.min_time,
                    max_time: w.max_time,
                }),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
            written += 1;
        }
        self.waiting.drain(..written);
        if self.waiting.is_empty() {
            // Most series wait with a chunk once every chunk range's quarter: keep no buffer
            // in between (it would be 128 bytes in every series).
            self.waiting = Vec::new();
        }
        res
    }

    /// Closes the open chunk and writes every full chunk to the store.
    pub fn flush(&mut self, sref: u64, store: &dyn ChunkStore) -> Result<()> {
        self.close_open();
        self.store_waiting(sref, store)
    }

    /// Drops chunks that end before `mint`. Returns whether the series is now empty.
    pub fn truncate_before(&mut self, mint: i64) -> bool {
        self.mmapped.retain(|c| c.max_time >= mint);
        self.waiting.retain(|c| c.max_time >= mint);
        if self
            .head
            .as_ref()
            .is_some_and(|h| h.max_time != i64::MIN && h.max_time < mint)
        {
            self.head = None;
        }
        self.mmapped.is_empty()
            && self.waiting.is_empty()
            && self.head.as_ref().is_none_or(|h| h.app.num_samples() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::chunk_store::MemChunkStore;

    const H2: i64 = 2 * 3600 * 1000;

    #[test]
    fn cuts_at_about_120_samples_and_range_end() {
        let store = MemChunkStore::default();
        let mut s = SeriesData::default();
        // 15s interval across a full 2h range: 480 samples → 4 chunks of 120.
        for i in 0..480 {
            assert!(s.append(i * 15_000, i as f64, H2));
        }
        // Cut chunks wait until stored.
        assert_eq!((s.mmapped.len(), s.waiting.len()), (0, 3));
        s.store_waiting(1, &store).unwrap();
        assert_eq!((s.mmapped.len(), s.waiting.len()), (3, 0));
        let h = s.head.as_ref().unwrap();
        assert_eq!(h.app.num_samples(), 120);
        for c in &s.mmapped {
            let d = store.read(c.chunk_ref).unwrap();
            assert_eq!(crate::chunkenc::xor::num_samples(&d), 120);
        }
        // The next sample is in the next range: cut at the boundary.
        assert!(s.append(H2, 0.0, H2));
        assert_eq!(s.waiting.len(), 1);
        assert_eq!(s.waiting[0].max_time, H2 - 15_000);
        assert_eq!(s.head.as_ref().unwrap().min_time, H2);
    }

    #[test]
    fn sparse_series_cut_at_range_boundary() {
        let store = MemChunkStore::default();
        let mut s = SeriesData::default();
        // one sample per 10 minutes: 12 per range, chunks end at 2h boundaries.
        for i in 0..30 {
            s.append(i * 600_000, 1.0, H2);
        }
        s.store_waiting(1, &store).unwrap();
        assert_eq!(s.mmapped.len(), 2);
        assert!(s
            .mmapped
            .iter()
            .all(|c| c.max_time < range_for_timestamp(c.min_time, H2)));
        assert_eq!(s.mmapped[0].max_time, 11 * 600_000);
    }

    #[test]
    fn rate_increase_cuts_at_240() {
        let store = MemChunkStore::default();
        let mut s = SeriesData::default();
        // slow start predicts a late end, then samples arrive every ms.
        for i in 0..31 {
            s.append(i * 60_000, 1.0, H2);
        }
        let base = 31 * 60_000;
        for i in 0..300 {
            s.append(base + i, 1.0, H2);
        }
        s.store_waiting(1, &store).unwrap();
        assert_eq!(s.mmapped.len(), 1);
        assert_eq!(
            crate::chunkenc::xor::num_samples(&store.read(s.mmapped[0].chunk_ref).unwrap()),
            240
        );
    }

    #[test]
    fn out_of_order_is_dropped() {
        let mut s = SeriesData::default();
        assert!(s.append(10, 1.0, H2));
        assert!(!s.append(10, 1.0, H2));
        assert!(!s.append(5, 1.0, H2));
        assert_eq!(s.max_time(), Some(10));
    }

    /// Waiting chunks count in the series' time range, are dropped by truncation like stored
    /// ones, and a sample not newer than a waiting chunk's last is refused once the open chunk
    /// is closed.
    #[test]
    fn waiting_chunks_count_until_stored_or_truncated() {
        let mut s = SeriesData::default();
        for i in 0..300 {
            s.append(i * 15_000, 1.0, H2);
        }
        s.close_open();
        assert!(s.head.is_none());
        assert_eq!(s.waiting.len(), 3);
        assert_eq!((s.min_time(), s.max_time()), (Some(0), Some(299 * 15_000)));
        assert!(!s.append(299 * 15_000, 1.0, H2));
        assert!(!s.truncate_before(150 * 15_000));
        assert_eq!(s.waiting.len(), 2);
        assert!(s.truncate_before(300 * 15_000));
        assert!(s.waiting.is_empty());
    }

    #[test]
    fn chunk_end_prediction() {
        assert_eq!(compute_chunk_end_time(0, 29 * 15_000, H2), 1_800_000);
        assert_eq!(compute_chunk_end_time(0, H2, H2), H2);
        assert_eq!(range_for_timestamp(-1, H2), 0);
        assert_eq!(range_for_timestamp(H2, H2), 2 * H2);
    }
}
