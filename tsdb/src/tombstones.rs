//! The tombstones file of a block (`<block>/tombstones`): deleted time ranges per series,
//! byte-compatible with Prometheus.
//!
//! ```text
//! ┌────────────────────────────┬──────────────────┐
//! │ magic 0x0130BA30 (4B, BE)  │ version 1 (1B)   │
//! ├────────────────────────────┴──────────────────┤
//! │ entry 1 … entry n                             │
//! ├───────────────────────────────────────────────┤
//! │ CRC-32C of the entries (4B)                   │
//! └───────────────────────────────────────────────┘
//! entry: series ref <uvarint> │ #intervals <uvarint> │ (mint <varint>, maxt <varint>)…
//! ```
//!
//! Entries are written in increasing series reference order. Intervals are inclusive at both
//! ends.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::encoding::{crc32c, Decbuf, Encbuf};
use crate::{Error, Result};

/// Magic number of the tombstones file.
pub const MAGIC_TOMBSTONES: u32 = 0x0130_BA30;
/// The only tombstones format version.
pub const TOMBSTONES_FORMAT_V1: u8 = 1;
/// File name of the tombstones file in a block.
pub const TOMBSTONES_FILENAME: &str = "tombstones";

/// An inclusive time interval `[mint, maxt]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First deleted timestamp.
    pub mint: i64,
    /// Last deleted timestamp.
    pub maxt: i64,
}

impl Interval {
    /// The interval `[mint, maxt]`.
    pub fn new(mint: i64, maxt: i64) -> Self {
        Interval { mint, maxt }
    }
    /// Whether `t` is inside.
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }
    /// Whether `[mint, maxt]` lies entirely inside.
    pub fn covers(&self, mint: i64, maxt: i64) -> bool {
        self.mint <= mint && maxt <= self.maxt
    }
}

/// Sorted, non-overlapping, non-adjacent intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(Vec<Interval>);

impl Intervals {
    /// No intervals.
    pub fn new() -> Self {
        Intervals(Vec::new())
    }

    /// The intervals, sorted.
    pub fn as_slice(&self) -> &[Interval] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of intervals.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds an interval, merging it with overlapping or adjacent ones.
    pub fn add(&mut self, n: Interval) {
        if n.mint > n.maxt {
            return;
        }
        // first interval that could touch n (its maxt + 1 >= n.mint)
        let i = self
            .0
            .partition_point(|x| x.maxt.saturating_add(1) < n.mint);
        let mut j = i;
        let mut m = n;
        while j < self.0.len() && self.0[j].mint <= n.maxt.saturating_add(1) {
            m.mint = m.mint.min(self.0[j].mint);
            m.maxt = m.maxt.max(self.0[j].maxt);
            j += 1;
        }
        self.0.splice(i..j, std::iter::once(m));
    }

    /// Adds all intervals of `other`.
    pub fn merge(&mut self, other: &Intervals) {
        for iv in &other.0 {
            self.add(*iv);
        }
    }

    /// Whether `t` is inside one of the intervals.
    pub fn contains(&self, t: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < t);
        i < self.0.len() && self.0[i].mint <= t
    }

    /// Whether `[mint, maxt]` lies entirely inside one interval.
    pub fn covers(&self, mint: i64, maxt: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < mint);
        i < self.0.len() && self.0[i].covers(mint, maxt)
    }

    /// Whether some interval intersects `[mint, maxt]`.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < mint);
        i < self.0.len() && self.0[i].mint <= maxt
    }
}

impl FromIterator<Interval> for Intervals {
    fn from_iter<T: IntoIterator<Item = Interval>>(iter: T) -> Self {
        let mut iv = Intervals::new();
        for i in iter {
            iv.add(i);
        }
        iv
    }
}

/// Deleted intervals by series reference.
pub type Tombstones = BTreeMap<u64, Intervals>;

/// Encodes tombstones into the file format.
pub fn encode_tombstones(t: &Tombstones) -> Vec<u8> {
    let mut e = Encbuf::with_capacity(16 + t.len() * 8);
    e.put_be32(MAGIC_TOMBSTONES);
    e.put_byte(TOMBSTONES_FORMAT_V1);
    for (r, ivs) in t {
        if ivs.is_empty() {
            continue;
        }
        e.put_uvarint(*r);
        e.put_uvarint(ivs.len() as u64);
        for iv in ivs.as_slice() {
            e.put_varint(iv.mint);
            e.put_varint(iv.maxt);
        }
    }
    e.put_crc32c_of(5);
    e.b
}

/// Decodes a tombstones file's bytes; `path` names the file in errors.
pub fn decode_tombstones(b: &[u8], path: &Path) -> Result<Tombstones> {
    if b.len() < 9 {
        return Err(Error::corruption(
            path,
            0,
            format!("tombstones file too short: {} bytes", b.len()),
        ));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != MAGIC_TOMBSTONES {
        return Err(Error::corruption(
            path,
            0,
            format!("invalid magic number {magic:#010x}"),
        ));
    }
    if b[4] != TOMBSTONES_FORMAT_V1 {
        return Err(Error::corruption(
            path,
            4,
            format!("invalid tombstones format version {}", b[4]),
        ));
    }
    let body = &b[5..b.len() - 4];
    let n = b.len();
    let want = u32::from_be_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
    if crc32c(body) != want {
        return Err(Error::corruption(
            path,
            (n - 4) as u64,
            "tombstones checksum mismatch",
        ));
    }
    let mut d = Decbuf::new(body);
    let mut t = Tombstones::new();
    while !d.is_empty() {
        let at = 5 + d.position() as u64;
        let err = |e: Error| Error::corruption(path, at, format!("tombstone entry: {e}"));
        let r = d.uvarint().map_err(err)?;
        let k = d.uvarint().map_err(err)?;
        let ivs = t.entry(r).or_default();
        for _ in 0..k {
            let mint = d.varint().map_err(err)?;
            let maxt = d.varint().map_err(err)?;
            ivs.add(Interval::new(mint, maxt));
        }
    }
    Ok(t)
}

/// Reads `<dir>/tombstones`; a missing file means no tombstones. Returns them and the file
/// size.
pub fn read_tombstones(dir: impl AsRef<Path>) -> Result<(Tombstones, u64)> {
    let path = dir.as_ref().join(TOMBSTONES_FILENAME);
    match fs::read(&path) {
        Ok(b) => Ok((decode_tombstones(&b, &path)?, b.len() as u64)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Tombstones::new(), 0)),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Writes `<dir>/tombstones` atomically (temporary file, fsync, rename). Returns its size.
pub fn write_tombstones(dir: impl AsRef<Path>, t: &Tombstones) -> Result<u64> {
    let dir = dir.as_ref();
    let b = encode_tombstones(t);
    crate::fsutil::write_atomic(dir, TOMBSTONES_FILENAME, &b)?;
    Ok(b.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_add_merge_contains() {
        let mut iv = Intervals::new();
        iv.add(Interval::new(10, 20));
        iv.add(Interval::new(30, 40));
        iv.add(Interval::new(21, 25)); // adjacent to the first
        assert_eq!(
            iv.as_slice(),
            &[Interval::new(10, 25), Interval::new(30, 40)]
        );
        iv.add(Interval::new(0, 100));
        assert_eq!(iv.as_slice(), &[Interval::new(0, 100)]);
        let mut a: Intervals = [Interval::new(1, 2), Interval::new(8, 9)]
            .into_iter()
            .collect();
        a.merge(&[Interval::new(5, 5)].into_iter().collect());
        assert_eq!(a.len(), 3);
        assert!(a.contains(5) && a.contains(9) && !a.contains(3) && !a.contains(10));
        assert!(a.covers(8, 9) && !a.covers(2, 5));
        assert!(a.overlaps(2, 4) && !a.overlaps(3, 4));
    }

    #[test]
    fn empty_file_is_nine_bytes_and_round_trips() {
        let t = Tombstones::new();
        let b = encode_tombstones(&t);
        assert_eq!(b, [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0]);
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tombstones::new();
        t.insert(
            3,
            [Interval::new(-5, 7), Interval::new(100, 200)]
                .into_iter()
                .collect(),
        );
        t.insert(1, [Interval::new(1, 1)].into_iter().collect());
        write_tombstones(dir.path(), &t).unwrap();
        let (got, size) = read_tombstones(dir.path()).unwrap();
        assert_eq!(got, t);
        assert!(size > 9);
        let p = dir.path().join(TOMBSTONES_FILENAME);
        let mut b = fs::read(&p).unwrap();
        b[6] ^= 1;
        fs::write(&p, b).unwrap();
        let err = read_tombstones(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tombstones"), "{err}");
    }
}
