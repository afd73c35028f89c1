//! WAL writer/reader round trips across page and segment boundaries, and the on-disk bytes.

mod common;

use rand::{Rng, RngCore, SeedableRng};
use tsdb::wal::{self, Reader, Wal, WalOptions, PAGE_SIZE};

fn read_all(dir: &std::path::Path) -> Vec<(u32, u64, Vec<u8>)> {
    let mut r = Reader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some((s, o, rec)) = r.next().unwrap() {
        out.push((s, o, rec.to_vec()));
    }
    out
}

/// Records of mixed sizes: tiny, compressible, page-sized and larger than a page.
fn make_records(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = match i % 7 {
                0 => 0,
                1 => rng.gen_range(1..20),
                2 => rng.gen_range(100..3000),
                3 => PAGE_SIZE - 7,
                4 => rng.gen_range(PAGE_SIZE..3 * PAGE_SIZE),
                5 => rng.gen_range(20..200),
                _ => rng.gen_range(1000..20000),
            };
            let mut v = vec![0u8; len];
            if i % 2 == 0 {
                rng.fill_bytes(&mut v); // incompressible
            } else {
                for (j, b) in v.iter_mut().enumerate() {
                    *b = (j % 13) as u8 + (i % 5) as u8; // compressible
                }
            }
            v
        })
        .collect()
}

#[test]
fn round_trip_across_pages_and_segments() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let recs = make_records(&mut rng, 200);
        let opts = WalOptions {
            segment_size: 4 * PAGE_SIZE,
            compress,
        };
        let mut w = Wal::open(dir.path(), opts).unwrap();
        // Batches of 1..5 records.
        let mut i = 0;
        while i < recs.len() {
            let n = rng.gen_range(1..5).min(recs.len() - i);
            let batch: Vec<&[u8]> = recs[i..i + n].iter().map(|r| r.as_slice()).collect();
            w.log(&batch).unwrap();
            i += n;
        }
        w.close().unwrap();
        let (first, last) = wal::segment_range(dir.path()).unwrap().unwrap();
        assert_eq!(first, 0);
        assert!(last > 5, "expected many segments, got {last}");
        let got = read_all(dir.path());
        assert_eq!(got.len(), recs.len());
        for (k, ((_, _, g), want)) in got.iter().zip(&recs).enumerate() {
            assert_eq!(g, want, "record {k} (compress {compress})");
        }
        // Offsets strictly increase within a segment, segments never decrease.
        for w2 in got.windows(2) {
            assert!((w2[0].0, w2[0].1) < (w2[1].0, w2[1].1));
        }
        // Every closed segment is whole pages.
        for s in wal::list_segments(dir.path()).unwrap() {
            let len = std::fs::metadata(wal::segment_name(dir.path(), s))
                .unwrap()
                .len();
            assert_eq!(len % PAGE_SIZE as u64, 0, "segment {s} len {len}");
        }
    }
}

#[test]
fn fragment_bytes_match_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 2, true);
    // Incompressible small record: stored raw as one full fragment.
    w.log(&[b"abc"]).unwrap();
    let seg = wal::segment_name(dir.path(), 0);
    // Flushed to the OS at the end of the batch, before close.
    let b = std::fs::read(&seg).unwrap();
    assert_eq!(b.len(), 10);
    assert_eq!(b[0], 1);
    assert_eq!(&b[1..3], &3u16.to_be_bytes());
    assert_eq!(&b[3..7], &tsdb::encoding::crc32c(b"abc").to_be_bytes());
    assert_eq!(&b[7..], b"abc");
    // Compressible record: snappy flag set, data is raw snappy.
    let big = vec![b'x'; 1000];
    w.log(&[&big]).unwrap();
    let b = std::fs::read(&seg).unwrap();
    assert_eq!(b[10], 1 | 8);
    let len = u16::from_be_bytes([b[11], b[12]]) as usize;
    assert!(len < 100);
    let dec = snap::raw::Decoder::new()
        .decompress_vec(&b[17..17 + len])
        .unwrap();
    assert_eq!(dec, big);
    // A record that does not fit in the page is split first/middle/last.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut rnd = vec![0u8; PAGE_SIZE + 100];
    rng.fill_bytes(&mut rnd);
    w.log(&[&rnd]).unwrap();
    let b = std::fs::read(&seg).unwrap();
    let at = 17 + len;
    assert_eq!(b[at], 2, "first fragment");
    let l1 = u16::from_be_bytes([b[at + 1], b[at + 2]]) as usize;
    assert_eq!(at + 7 + l1, PAGE_SIZE, "first fragment fills the page");
    assert_eq!(
        b[PAGE_SIZE], 4,
        "last fragment at the start of the next page"
    );
    w.close().unwrap();
    let b = std::fs::read(&seg).unwrap();
    assert_eq!(b.len(), 2 * PAGE_SIZE);
    let got = read_all(dir.path());
    assert_eq!(
        got.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        vec![b"abc".to_vec(), big, rnd]
    );
    assert_eq!((got[0].1, got[1].1, got[2].1), (0, 10, at as u64));
}

#[test]
fn no_fragment_starts_in_the_last_bytes_of_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 4, false);
    // Fill the page so that exactly 5 bytes remain: the next record goes to the next page.
    let first = vec![1u8; PAGE_SIZE - 7 - 5];
    w.log(&[&first, b"z"]).unwrap();
    w.close().unwrap();
    let b = std::fs::read(wal::segment_name(dir.path(), 0)).unwrap();
    assert_eq!(&b[PAGE_SIZE - 5..PAGE_SIZE], &[0; 5]);
    assert_eq!(b[PAGE_SIZE], 1);
    assert_eq!(&b[PAGE_SIZE + 7..PAGE_SIZE + 8], b"z");
    let got = read_all(dir.path());
    assert_eq!(got[1], (0, PAGE_SIZE as u64, b"z".to_vec()));
}

#[test]
fn reopen_continues_in_a_new_segment_and_truncate_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 2 * PAGE_SIZE,
        compress: true,
    };
    {
        let mut w = Wal::open(dir.path(), opts.clone()).unwrap();
        w.log(&[b"one"]).unwrap();
        w.sync().unwrap();
        // dropped without close: the partial page stays as written
    }
    let mut w = Wal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(w.current_segment(), 1);
    w.log(&[b"two", b"three"]).unwrap();
    assert_eq!(w.next_segment().unwrap(), 2);
    w.log(&[b"four"]).unwrap();
    assert_eq!(w.segments().unwrap(), (0, 2));
    let got: Vec<_> = read_all(dir.path())
        .into_iter()
        .map(|r| (r.0, r.2))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, b"one".to_vec()),
            (1, b"two".to_vec()),
            (1, b"three".to_vec()),
            (2, b"four".to_vec())
        ]
    );
    w.truncate(2).unwrap();
    assert_eq!(w.segments().unwrap(), (2, 2));
    // Never deletes the segment being written.
    w.truncate(10).unwrap();
    assert_eq!(w.segments().unwrap(), (2, 2));
    w.close().unwrap();
    assert!(matches!(w.log(&[b"x"]), Err(tsdb::Error::Closed)));
}

#[test]
fn record_larger_than_a_segment_gets_its_own_oversized_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 1, false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut big = vec![0u8; 3 * PAGE_SIZE];
    rng.fill_bytes(&mut big);
    w.log(&[b"a", &big, b"b"]).unwrap();
    w.close().unwrap();
    let got = read_all(dir.path());
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].0, got[1].0, got[2].0), (0, 1, 2));
    assert_eq!(got[1].2, big);
}

#[test]
fn records_survive_without_close() {
    // What `log` returned for is in the files even if the process dies before close
    // (simulated by copying the files while the writer is still open).
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 2, true);
    let recs: Vec<Vec<u8>> = (0..500u32)
        .map(|i| format!("record {i} {}", "y".repeat(i as usize % 50)).into_bytes())
        .collect();
    for r in &recs {
        w.log(&[r]).unwrap();
    }
    w.sync().unwrap();
    for s in wal::list_segments(dir.path()).unwrap() {
        std::fs::copy(
            wal::segment_name(dir.path(), s),
            wal::segment_name(copy.path(), s),
        )
        .unwrap();
    }
    let got: Vec<Vec<u8>> = read_all(copy.path()).into_iter().map(|r| r.2).collect();
    assert_eq!(got, recs);
}

#[test]
fn writer_and_reader_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Wal>();
    assert_send::<Reader>();
}
