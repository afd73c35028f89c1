//! Head chunk files: damaged and torn files are cut at the last good chunk, later files
//! deleted, never a panic; and a data dir written by ignis (WAL + chunks_head) is read by
//! Prometheus's own `promtool tsdb dump` to exactly the samples written.

mod common;

use std::path::Path;

use tsdb::chunkenc::{Encoding, XorAppender};
use tsdb::head::head_chunks::{chunk_file_name, ChunkDiskMapper, HeadChunkRef, FILE_HEADER_SIZE};
use tsdb::wal::record::{encode_samples, encode_series, RefSample, RefSeries};
use tsdb::wal::{Wal, WalOptions};
use tsdb::Labels;

fn xor_chunk(ts: std::ops::Range<i64>, f: impl Fn(i64) -> f64) -> Vec<u8> {
    let mut a = XorAppender::new();
    for t in ts {
        a.append(t, f(t));
    }
    a.bytes().to_vec()
}

/// Writes 30 chunks of 3 series over files of at most 1 KiB; returns their refs and bytes.
fn write_chunks(dir: &Path) -> Vec<(HeadChunkRef, u64, Vec<u8>)> {
    let mut m = ChunkDiskMapper::open_with_max_file_size(dir, 1024).unwrap();
    let mut out = Vec::new();
    for i in 0..30i64 {
        let s = (i % 3) as u64 + 1;
        let data = xor_chunk(i * 1000..i * 1000 + 40, |t| (t * s as i64) as f64 * 0.5);
        let r = m
            .write_chunk(s, i * 1000, i * 1000 + 39, Encoding::Xor, &data)
            .unwrap();
        out.push((r, s, data));
    }
    m.close().unwrap();
    out
}

fn readable(m: &ChunkDiskMapper, chunks: &[(HeadChunkRef, u64, Vec<u8>)]) -> usize {
    let mut n = 0;
    for (r, _, d) in chunks {
        match m.chunk(*r) {
            Ok(got) => {
                assert_eq!(got, &d[..]);
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

#[test]
fn corrupted_chunk_cuts_file_and_drops_later_files() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = write_chunks(dir.path());
    let files: Vec<u32> = {
        let mut f: Vec<u32> = chunks.iter().map(|c| c.0.seq()).collect();
        f.dedup();
        f
    };
    assert!(files.len() >= 3, "{files:?}");
    // Damage the second chunk of the second file.
    let victim = chunks
        .iter()
        .filter(|c| c.0.seq() == files[1])
        .nth(1)
        .unwrap()
        .0;
    let path = chunk_file_name(dir.path(), files[1]);
    let mut b = std::fs::read(&path).unwrap();
    b[victim.offset() as usize + 30] ^= 0x55;
    std::fs::write(&path, &b).unwrap();

    let mut m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 1024).unwrap();
    assert_eq!(m.corruptions().len(), 1);
    let c = &m.corruptions()[0];
    assert_eq!(c.file, path);
    assert_eq!(c.offset, victim.offset() as u64);
    assert!(c.reason.contains("checksum"), "{}", c.reason);
    assert_eq!(m.file_seqs(), vec![files[0], files[1]]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        victim.offset() as u64
    );
    let good = chunks.iter().position(|c| c.0 == victim).unwrap();
    assert_eq!(readable(&m, &chunks), good);
    let mut n = 0;
    m.iterate_all(|_, _, _, _, _, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, good);
    // Writing continues in the file after the kept ones.
    let r = m.write_chunk(1, 99, 100, Encoding::Xor, &[0, 0]).unwrap();
    assert_eq!(
        (r.seq(), r.offset() as usize),
        (files[1] + 1, FILE_HEADER_SIZE)
    );
}

#[test]
fn torn_tail_and_empty_last_file() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = write_chunks(dir.path());
    let last = chunks.last().unwrap().0;
    let path = chunk_file_name(dir.path(), last.seq());
    // Torn in the middle of the last chunk.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(last.offset() as u64 + 20).unwrap();
    // An empty file after it, as left by a crash right after a cut.
    std::fs::write(chunk_file_name(dir.path(), last.seq() + 1), b"").unwrap();
    let m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 1024).unwrap();
    assert_eq!(m.corruptions().len(), 1);
    assert_eq!(m.corruptions()[0].offset, last.offset() as u64);
    assert_eq!(readable(&m, &chunks), chunks.len() - 1);
    assert!(!chunk_file_name(dir.path(), last.seq() + 1).exists());
    drop(m);
    // Reopening after the cut is clean.
    let m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 1024).unwrap();
    assert!(m.corruptions().is_empty());
    assert_eq!(readable(&m, &chunks), chunks.len() - 1);
    // A bad reference is an error, not a panic.
    assert!(m.chunk(HeadChunkRef::new(last.seq(), 3)).is_err());
    assert!(m.chunk(HeadChunkRef::new(last.seq(), 1 << 30)).is_err());
    assert!(m.chunk(HeadChunkRef::new(999, 8)).is_err());
}

#[test]
fn bad_header_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    write_chunks(dir.path());
    let p = chunk_file_name(dir.path(), 1);
    let mut b = std::fs::read(&p).unwrap();
    b[0] = 0x77;
    std::fs::write(&p, &b).unwrap();
    let e = ChunkDiskMapper::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
}

/// `promtool tsdb dump` of `dir` as (labels, t, v), sorted by labels then time.
fn dumped_samples(promtool: &str, dir: &Path) -> Vec<(String, i64, f64)> {
    let mut got: Vec<(String, i64, f64)> = common::promtool_dump(promtool, dir)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut p = l.rsplitn(3, ' ');
            let t = p.next().unwrap().parse().unwrap();
            let v = p.next().unwrap().parse().unwrap();
            (p.next().unwrap().to_string(), t, v)
        })
        .collect();
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    got
}

/// ignis writes a data dir (WAL + chunks_head) and Prometheus's promtool reads it back.
#[test]
fn promtool_reads_what_ignis_writes() {
    let Some(promtool) = common::promtool() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let base: i64 = 1_700_000_000_000;
    let series: Vec<RefSeries> = (1..=3u64)
        .map(|r| RefSeries {
            series_ref: r,
            labels: Labels::from_pairs(&[
                ("__name__", "ignis_test"),
                ("job", "j"),
                ("n", &r.to_string()),
            ]),
        })
        .collect();
    let value = |r: u64, i: i64| (r as i64 * 1000 + i) as f64 / 4.0;
    let n = 300i64;
    // chunks_head holds the first 120 samples of series 1 and 2.
    {
        let mut m = ChunkDiskMapper::open(data.path().join("chunks_head")).unwrap();
        for r in 1..=2u64 {
            let mut a = XorAppender::new();
            for i in 0..120 {
                a.append(base + i * 1000, value(r, i));
            }
            m.write_chunk(r, base, base + 119 * 1000, Encoding::Xor, a.bytes())
                .unwrap();
        }
        m.close().unwrap();
    }
    // The WAL holds the series and the samples after the chunks (so the dump can only be
    // complete if promtool reads the chunk file).
    {
        let mut w = Wal::open(data.path().join("wal"), WalOptions::default()).unwrap();
        let mut buf = Vec::new();
        encode_series(&series, &mut buf);
        w.log(&[&buf]).unwrap();
        for i in 0..n {
            let s: Vec<_> = (1..=3u64)
                .filter(|&r| r == 3 || i >= 120)
                .map(|r| RefSample {
                    series_ref: r,
                    t: base + i * 1000,
                    v: value(r, i),
                })
                .collect();
            encode_samples(&s, &mut buf);
            w.log(&[&buf]).unwrap();
        }
        w.close().unwrap();
    }
    let got = dumped_samples(promtool, data.path());
    let mut want: Vec<(String, i64, f64)> = Vec::new();
    for s in &series {
        for i in 0..n {
            want.push((
                s.labels.to_string(),
                base + i * 1000,
                value(s.series_ref, i),
            ));
        }
    }
    want.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

#[test]
fn random_garbage_chunk_files_never_panic() {
    use rand::{Rng, RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let chunks = write_chunks(dir.path());
        let seqs: Vec<u32> = {
            let mut s: Vec<u32> = chunks.iter().map(|c| c.0.seq()).collect();
            s.dedup();
            s
        };
        let seq = seqs[rng.gen_range(0..seqs.len())];
        let p = chunk_file_name(dir.path(), seq);
        let mut b = std::fs::read(&p).unwrap();
        let mut start = rng.gen_range(8..b.len());
        let n = rng.gen_range(1..16).min(b.len() - start);
        rng.fill_bytes(&mut b[start..start + n]);
        if round % 3 == 0 {
            let cut = rng.gen_range(8..b.len());
            b.truncate(cut);
            start = start.min(cut);
        }
        std::fs::write(&p, &b).unwrap();
        let mut m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 1024).unwrap();
        let good = readable(&m, &chunks);
        // Everything before the damaged byte is still there.
        let intact = chunks
            .iter()
            .take_while(|c| {
                c.0.seq() < seq || (c.0.seq() == seq && (c.0.offset() as usize) < start)
            })
            .count();
        assert!(
            good + 1 >= intact,
            "round {round}: {good} readable, {intact} before the damage"
        );
        let mut n = 0;
        m.iterate_all(|_, _, _, _, _, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        // (A file cut exactly at a chunk boundary looks complete, so later files may still hold
        // chunks: compare with every readable chunk, not just the prefix.)
        let all_ok = chunks
            .iter()
            .filter(|c| m.chunk(c.0).map(|d| d == &c.2[..]).unwrap_or(false))
            .count();
        assert_eq!(n, all_ok);
    }
}

#[test]
fn read_only_open_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = write_chunks(dir.path());
    let last = chunks.last().unwrap().0;
    let victim = chunks[chunks.len() / 2].0;
    let p = chunk_file_name(dir.path(), victim.seq());
    let mut b = std::fs::read(&p).unwrap();
    b[victim.offset() as usize + 27] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();

    let mut m = ChunkDiskMapper::open_read_only(dir.path()).unwrap();
    assert_eq!(m.corruptions().len(), 1);
    assert_eq!(m.corruptions()[0].offset, victim.offset() as u64);
    let good = chunks.iter().position(|c| c.0 == victim).unwrap();
    assert_eq!(readable(&m, &chunks), good);
    assert!(m.chunk(last).is_err(), "files after the damage are ignored");
    assert!(m.write_chunk(1, 0, 1, Encoding::Xor, &[0, 0]).is_err());
    assert!(m.truncate(i64::MAX).is_err());
    drop(m);
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    assert_eq!(before, after);

    let m = ChunkDiskMapper::open_read_only(dir.path().join("missing")).unwrap();
    assert!(m.file_seqs().is_empty());
    assert!(!dir.path().join("missing").exists());
}

/// A checkpointed WAL written by ignis (checkpoint + later segments) is replayed by promtool.
#[test]
fn promtool_reads_an_ignis_checkpoint() {
    use tsdb::wal::checkpoint::checkpoint;
    let Some(promtool) = common::promtool() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let wal_dir = data.path().join("wal");
    let base: i64 = 1_700_000_000_000;
    let mut w = common::open_wal(&wal_dir, 2, true);
    let series: Vec<RefSeries> = (1..=50u64)
        .map(|r| RefSeries {
            series_ref: r,
            labels: Labels::from_pairs(&[("__name__", "cp_test"), ("n", &r.to_string())]),
        })
        .collect();
    let mut buf = Vec::new();
    encode_series(&series, &mut buf);
    w.log(&[&buf]).unwrap();
    for i in 0..200i64 {
        let s: Vec<_> = (1..=50u64)
            .map(|r| RefSample {
                series_ref: r,
                t: base + i * 1000,
                v: (r as i64 * i) as f64,
            })
            .collect();
        encode_samples(&s, &mut buf);
        w.log(&[&buf]).unwrap();
    }
    let to = w.next_segment().unwrap() - 1;
    for i in 200..260i64 {
        let s: Vec<_> = (1..=50u64)
            .map(|r| RefSample {
                series_ref: r,
                t: base + i * 1000,
                v: (r as i64 * i) as f64,
            })
            .collect();
        encode_samples(&s, &mut buf);
        w.log(&[&buf]).unwrap();
    }
    // Keep odd series and samples from i = 100 on.
    checkpoint(&wal_dir, 0, to, |r| r % 2 == 1, base + 100 * 1000).unwrap();
    w.truncate(to + 1).unwrap();
    w.close().unwrap();
    drop(w);

    let got = dumped_samples(promtool, data.path());
    let mut want = Vec::new();
    for s in series.iter().filter(|s| s.series_ref % 2 == 1) {
        for i in 100..260i64 {
            want.push((
                s.labels.to_string(),
                base + i * 1000,
                (s.series_ref as i64 * i) as f64,
            ));
        }
    }
    want.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}
