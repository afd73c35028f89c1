//! Torn and damaged WAL segments: the reader yields every record before the damage and stops
//! with a CorruptionError; `repair` cuts the log there, a new writer continues, and the
//! repaired log reads clean.

mod common;

use std::path::Path;
use std::sync::Arc;

use rand::{Rng, RngCore, SeedableRng};
use tsdb::wal::{self, repair, CorruptionError, Reader, Wal, WalMetrics, WalOptions, PAGE_SIZE};
use tsdb::Error;

/// A written record: its bytes, segment, start offset and end offset (where the writer stood
/// right after it).
struct Written {
    data: Vec<u8>,
    seg: u32,
    start: u64,
    end: u64,
}

fn write_log(dir: &Path, seed: u64, n: usize, compress: bool) -> Vec<Written> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut w = common::open_wal(dir, 3, compress);
    let mut out: Vec<Written> = Vec::new();
    for i in 0..n {
        let len = match i % 5 {
            0 => rng.gen_range(1..50),
            1 => rng.gen_range(50..2000),
            2 => rng.gen_range(PAGE_SIZE / 2..PAGE_SIZE + 5000),
            _ => rng.gen_range(100..600),
        };
        let mut data = vec![0u8; len];
        if i % 3 == 0 {
            rng.fill_bytes(&mut data);
        } else {
            data.iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (j / 7 + i) as u8);
        }
        w.log(&[&data]).unwrap();
        let (seg, end) = w.last_segment_and_offset();
        out.push(Written {
            data,
            seg,
            start: 0,
            end,
        });
    }
    w.close().unwrap();
    // Start offsets come from the reader of the intact log.
    let mut r = Reader::open(dir).unwrap();
    let mut k = 0;
    while let Some((seg, off, rec)) = r.next().unwrap() {
        assert_eq!(rec, &out[k].data[..]);
        assert_eq!(seg, out[k].seg);
        out[k].start = off;
        k += 1;
    }
    assert_eq!(k, n);
    out
}

/// Reads until the end or the first error.
fn read_until_error(dir: &Path) -> (Vec<Vec<u8>>, Option<CorruptionError>) {
    let mut r = Reader::open(dir).unwrap();
    let mut got = Vec::new();
    loop {
        match r.next() {
            Ok(Some((_, _, rec))) => got.push(rec.to_vec()),
            Ok(None) => return (got, None),
            Err(Error::WalCorruption(c)) => return (got, Some(c)),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// Checks that `got` is an exact prefix of `recs`, containing every record that ends before
/// the damage at (`seg`, `pos`) and none that the damage falls in or that comes after it.
fn check_prefix(got: &[Vec<u8>], recs: &[Written], seg: u32, pos: u64) {
    for (g, w) in got.iter().zip(recs) {
        assert_eq!(g, &w.data);
    }
    let must = recs
        .iter()
        .filter(|w| w.seg < seg || (w.seg == seg && w.end <= pos))
        .count();
    let may = recs
        .iter()
        .filter(|w| w.seg < seg || (w.seg == seg && w.start <= pos))
        .count();
    assert!(
        got.len() >= must,
        "lost intact records: got {} want >= {must} (damage {seg}:{pos})",
        got.len()
    );
    // The record the damage falls into is not returned, unless the damage is only in the page
    // padding written after it.
    if got.len() == may && may > 0 {
        let w = &recs[may - 1];
        assert!(
            w.seg < seg || pos + 7 > w.end,
            "record {} at {}..{} returned although damaged at {pos}",
            may - 1,
            w.start,
            w.end
        );
    }
    assert!(got.len() <= may);
}

fn continue_after_repair(dir: &Path, kept: &[Vec<u8>]) {
    let (got, err) = read_until_error(dir);
    assert!(err.is_none(), "repaired log must read clean: {err:?}");
    assert_eq!(got, kept);
    let mut w = common::open_wal(dir, 3, true);
    w.log(&[b"after repair 1", b"after repair 2"]).unwrap();
    w.close().unwrap();
    let (got, err) = read_until_error(dir);
    assert!(err.is_none());
    assert_eq!(got.len(), kept.len() + 2);
    assert_eq!(&got[..kept.len()], kept);
    assert_eq!(got[kept.len()], b"after repair 1");
}

#[test]
fn truncated_last_segment_at_random_offsets() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let recs = write_log(dir.path(), round, 60, round % 2 == 0);
        let (_, last) = wal::segment_range(dir.path()).unwrap().unwrap();
        let path = wal::segment_name(dir.path(), last);
        let len = std::fs::metadata(&path).unwrap().len();
        let cut = rng.gen_range(0..len);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let (got, err) = read_until_error(dir.path());
        check_prefix(&got, &recs, last, cut);
        if let Some(e) = &err {
            assert_eq!(e.segment, last);
            assert!(e.offset <= cut);
            assert_eq!(e.dir, dir.path());
            repair(dir.path(), e).unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() % PAGE_SIZE as u64,
                0
            );
        }
        continue_after_repair(dir.path(), &got);
    }
}

#[test]
fn flipped_bytes_anywhere() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let recs = write_log(dir.path(), 100 + round, 60, round % 2 == 1);
        let (first, last) = wal::segment_range(dir.path()).unwrap().unwrap();
        let seg = rng.gen_range(first..=last);
        let path = wal::segment_name(dir.path(), seg);
        let mut bytes = std::fs::read(&path).unwrap();
        let pos = rng.gen_range(0..bytes.len());
        bytes[pos] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();

        let metrics = Arc::new(WalMetrics::default());
        let mut r = Reader::open(dir.path())
            .unwrap()
            .with_metrics(metrics.clone());
        let mut got = Vec::new();
        let err = loop {
            match r.next() {
                Ok(Some((_, _, rec))) => got.push(rec.to_vec()),
                Ok(None) => panic!("flipped byte at {seg}:{pos} not detected"),
                Err(Error::WalCorruption(c)) => break c,
                Err(e) => panic!("unexpected error {e}"),
            }
        };
        // After an error the reader is done.
        assert!(r.next().unwrap().is_none());
        assert_eq!(WalMetrics::get(&metrics.corruptions_total), 1);
        check_prefix(&got, &recs, seg, pos as u64);
        assert_eq!(err.segment, seg);
        assert!(err.offset <= pos as u64);
        repair(dir.path(), &err).unwrap();
        // Later segments are gone.
        assert_eq!(
            wal::segment_range(dir.path()).unwrap().unwrap(),
            (first, seg)
        );
        continue_after_repair(dir.path(), &got);
    }
}

#[test]
fn torn_multi_page_record_and_garbage_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 8, false);
    let big = vec![7u8; 3 * PAGE_SIZE];
    w.log(&[b"small", &big]).unwrap();
    w.close().unwrap();
    let path = wal::segment_name(dir.path(), 0);
    // Keep the first fragment page and a half of the middle one.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len((PAGE_SIZE + PAGE_SIZE / 2) as u64)
        .unwrap();
    let (got, err) = read_until_error(dir.path());
    assert_eq!(got, vec![b"small".to_vec()]);
    let err = err.expect("torn record must be reported");
    assert_eq!(err.offset, 12, "offset of the torn record's first fragment");
    assert!(err.to_string().contains("00000000"), "{err}");
    repair(dir.path(), &err).unwrap();
    continue_after_repair(dir.path(), &[b"small".to_vec()]);

    // Garbage after the last record of a partial page.
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), WalOptions::default()).unwrap();
    w.log(&[b"one", b"two"]).unwrap();
    w.sync().unwrap();
    drop(w);
    let path = wal::segment_name(dir.path(), 0);
    let mut b = std::fs::read(&path).unwrap();
    b.truncate(20); // the two records, unpadded, as after a crash
    b.extend_from_slice(&[1, 0, 9, 0xde, 0xad]);
    std::fs::write(&path, &b).unwrap();
    let (got, err) = read_until_error(dir.path());
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    let err = err.unwrap();
    assert_eq!((err.segment, err.offset), (0, 20));
    repair(dir.path(), &err).unwrap();
    continue_after_repair(dir.path(), &got);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for round in 0..200 {
        // Segment files of random bytes, or valid logs with random bytes spliced in.
        let dir = tempfile::tempdir().unwrap();
        let len = rng.gen_range(0..3 * PAGE_SIZE);
        let mut b = vec![0u8; len];
        if round % 2 == 0 {
            rng.fill_bytes(&mut b);
        } else {
            let n = rng.gen_range(0..len.max(1)).min(len);
            rng.fill_bytes(&mut b[..n.min(64)]);
            if len > 0 {
                b[0] = rng.gen_range(0..5);
            }
        }
        std::fs::write(wal::segment_name(dir.path(), 0), &b).unwrap();
        let (_, err) = read_until_error(dir.path());
        if let Some(e) = err {
            repair(dir.path(), &e).unwrap();
            let (_, err) = read_until_error(dir.path());
            assert!(err.is_none(), "still corrupt after repair: {err:?}");
        }
    }
}

#[test]
fn record_decoders_never_panic_on_garbage() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..80);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        if len > 0 {
            b[0] = rng.gen_range(0..15);
        }
        let _ = tsdb::wal::record::decode(&b);
    }
}
