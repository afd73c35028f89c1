//! Chunk encodings, bit-identical to Prometheus's `chunkenc` package.
//!
//! A chunk is a self-contained byte string holding the samples of one series over a time
//! range. Its encoding is stored beside it (one byte in chunk files): 1 = XOR float chunk
//! ([`xor`]), 2 = native histogram, 3 = float native histogram (a later issue: the
//! [`Encoding`] and [`ValueType`] enums already name them so readers can skip or reject them
//! cleanly instead of misreading them).

pub mod bstream;
pub mod xor;

pub use xor::{SeekMark, XorAppender, XorChunk, XorCursor, XorIterator};

/// The encoding byte of a chunk, as stored in chunk files and the head chunk files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Gorilla-style float chunk.
    Xor = 1,
    /// Native histogram chunk.
    Histogram = 2,
    /// Float native histogram chunk.
    FloatHistogram = 3,
}

impl Encoding {
    /// The encoding for a stored byte, if known.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            _ => None,
        }
    }
}

/// What kind of value an iterator stands on, as Prometheus's `chunkenc.ValueType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Exhausted.
    None,
    /// A float sample.
    Float,
    /// An integer native histogram sample.
    Histogram,
    /// A float native histogram sample.
    FloatHistogram,
}

/// Samples per chunk that the head aims for before cutting a new one.
pub const TARGET_SAMPLES_PER_CHUNK: usize = 120;

/// Staleness marker: the NaN bit pattern Prometheus writes when a series disappears.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (compared by bits: other NaNs are ordinary values).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}
