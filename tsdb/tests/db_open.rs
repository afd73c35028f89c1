//! Db: opening a Prometheus data directory, reopening after writes, corrupt WAL tails,
//! cutting blocks and querying across blocks and head, deletion, snapshots, retention.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use tsdb::chunkenc::ValueType;
use tsdb::db::{Db, Options};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::Queryable;

fn all() -> Vec<Matcher> {
    vec![Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()]
}

fn dump(q: &dyn Queryable, mint: i64, maxt: i64, ms: &[Matcher]) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let qr = q.querier(mint, maxt).unwrap();
    qr.select(true, None, ms)
        .map(|s| {
            let s = s.unwrap();
            let mut it = s.iter();
            let mut v = Vec::new();
            while it.next() == ValueType::Float {
                v.push(it.at());
            }
            assert!(it.err().is_none(), "{:?}", it.err());
            (s.labels().clone(), v)
        })
        .collect()
}

fn opts() -> Options {
    Options {
        retention: Duration::ZERO,
        ..Options::default()
    }
}

fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

#[test]
fn opens_prometheus_wal_datadir_with_exact_samples() {
    let fixture = common::shared_dir().join("fixtures/prometheus-2.42/wal-datadir");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_dir(&fixture.join("data"), &data);

    // expected multiset: (labels text, ts) → value bits
    let f = std::fs::File::open(fixture.join("dump.txt.gz")).unwrap();
    let mut want: HashMap<(String, i64), u64> = HashMap::new();
    let mut lines = 0;
    for line in BufReader::new(flate2::read::GzDecoder::new(f)).lines() {
        let line = line.unwrap();
        let (rest, ts) = line.rsplit_once(' ').unwrap();
        let (ls, v) = rest.rsplit_once(' ').unwrap();
        let v = parse_value(v);
        let key = (ls.to_string(), ts.parse().unwrap());
        assert!(want.insert(key, v.to_bits()).is_none());
        lines += 1;
    }
    assert_eq!(lines, 57_130);

    for read_only in [false, true] {
        let db = if read_only {
            Db::open_read_only(&data, opts())
        } else {
            Db::open(&data, opts())
        }
        .unwrap();
        assert!(db.replay_stats().corruption.is_none());
        let mut got = 0;
        for (ls, samples) in dump(&db, i64::MIN, i64::MAX, &all()) {
            let name = ls.to_string();
            for (t, v) in samples {
                let w = want
                    .get(&(name.clone(), t))
                    .unwrap_or_else(|| panic!("unexpected sample {name} {t}"));
                if v.is_nan() {
                    assert!(f64::from_bits(*w).is_nan());
                } else {
                    assert_eq!(*w, v.to_bits(), "{name} {t}");
                }
                got += 1;
            }
        }
        assert_eq!(got, 57_130, "read_only={read_only}");
        let st = db.replay_stats();
        if read_only {
            // everything from the WAL
            assert_eq!(st.samples, 57_130);
        } else {
            // samples already in chunks_head/000001 are taken from there, the rest from the WAL
            assert!(st.skipped_samples > 0 && st.samples < 57_130, "{st:?}");
            assert_eq!(st.samples + st.skipped_samples, 57_130);
        }
        assert_eq!(db.head_stats().num_series, 360);
        db.close().unwrap();
    }
}

fn write_batches(db: &Db, series: usize, from: i64, to: i64) {
    let labels: Vec<Labels> = (0..series)
        .map(|i| Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]))
        .collect();
    let mut refs = vec![None; series];
    for t in from..to {
        let mut app = db.appender();
        for (i, l) in labels.iter().enumerate() {
            refs[i] = Some(
                app.append(refs[i], l, t * 1000, (t * 10 + i as i64) as f64)
                    .unwrap(),
            );
        }
        app.commit().unwrap();
    }
}

fn count(db: &Db) -> usize {
    dump(db, i64::MIN, i64::MAX, &all())
        .iter()
        .map(|s| s.1.len())
        .sum()
}

#[test]
fn reopen_keeps_committed_samples() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let db = Db::open(tmp.path(), opts()).unwrap();
        write_batches(&db, 10, 0, 1000);
        assert_eq!(count(&db), 10_000);
        // a second writable open of the same directory is refused
        assert!(Db::open(tmp.path(), opts()).is_err());
        db.close().unwrap();
    }
    let db = Db::open(tmp.path(), opts()).unwrap();
    assert_eq!(count(&db), 10_000);
    assert_eq!(
        db.replay_stats().samples + db.replay_stats().skipped_samples,
        10_000
    );
    write_batches(&db, 10, 1000, 1100);
    drop(db);
    let db = Db::open(tmp.path(), opts()).unwrap();
    assert_eq!(count(&db), 11_000);
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn corrupt_wal_tail_is_cut_and_reported() {
    for mode in ["truncate", "flip"] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let db = Db::open(tmp.path(), opts()).unwrap();
            write_batches(&db, 5, 0, 200);
        }
        let seg = last_segment(tmp.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        // the last non-zero byte is inside the last record
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        match mode {
            "truncate" => bytes.truncate(end - 3),
            _ => bytes[end - 3] ^= 0xff,
        }
        std::fs::write(&seg, &bytes).unwrap();
        let db = Db::open(tmp.path(), opts()).unwrap();
        let c = db
            .replay_stats()
            .corruption
            .clone()
            .expect("corruption reported");
        assert!(c.offset > 0, "{mode}: {c:?}");
        assert_eq!(
            db.wal_metrics()
                .corruptions_total
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let n = count(&db);
        // only the last batch (5 samples) is lost
        assert_eq!(n, 995, "{mode}");
        // appending continues, and the next open reads clean
        write_batches(&db, 5, 300, 310);
        drop(db);
        let db = Db::open(tmp.path(), opts()).unwrap();
        assert!(db.replay_stats().corruption.is_none(), "{mode}");
        assert_eq!(count(&db), 1045, "{mode}");
    }
}

const H2: i64 = 2 * 3600 * 1000;

#[test]
fn cut_block_then_query_across_blocks_and_head() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), opts()).unwrap();
    // 3.5 h of data at 30 s for 4 series: head spans > 1.5 × 2 h
    let step = 30;
    let end = (3 * H2 / 2 + H2 / 4) / 1000 / step;
    let labels: Vec<Labels> = (0..4)
        .map(|i| Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]))
        .collect();
    let mut want: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 4];
    let mut refs = [None; 4];
    for k in 0..end {
        let t = k * step * 1000;
        let mut app = db.appender();
        for i in 0..4 {
            refs[i] = Some(
                app.append(refs[i], &labels[i], t, (k + i as i64) as f64)
                    .unwrap(),
            );
            want[i].push((t, (k + i as i64) as f64));
        }
        app.commit().unwrap();
    }
    let before = dump(&db, i64::MIN, i64::MAX, &all());
    let written = db.compact().unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(db.blocks()[0].min_time(), 0);
    assert_eq!(db.blocks()[0].max_time(), H2);
    assert!(db.head().min_time() >= H2);
    let after = dump(&db, i64::MIN, i64::MAX, &all());
    assert_eq!(before, after);
    for (i, s) in after.iter().enumerate() {
        assert_eq!(s.1, want[i]);
    }
    // a range across the boundary
    let part = dump(&db, H2 - 60_000, H2 + 60_000, &all());
    assert_eq!(part[0].1.len(), 5);
    // samples older than the block end are now out of bounds
    let mut app = db.appender();
    assert!(app.append(None, &labels[0], H2 - 1, 1.0).is_err());
    drop(app);
    // the cut survives a restart (WAL checkpointed and truncated, blocks reloaded)
    drop(db);
    let db = Db::open(tmp.path(), opts()).unwrap();
    assert!(
        db.head().min_time() >= H2,
        "head min time {}",
        db.head().min_time()
    );
    assert_eq!(dump(&db, i64::MIN, i64::MAX, &all()), after);
    assert!(db.compact().unwrap().is_empty());
    assert!(tmp.path().join("wal").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("checkpoint.")));

    // label values come from both
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(
        q.label_values("i", &[], 0).unwrap(),
        vec!["0", "1", "2", "3"]
    );

    // delete a range spanning block and head, then clean tombstones
    let del = [Matcher::new(MatchType::Equal, "i", "1").unwrap()];
    db.delete(H2 - 600_000, H2 + 600_000, &del).unwrap();
    let got = dump(&db, i64::MIN, i64::MAX, &del);
    let expect: Vec<(i64, f64)> = want[1]
        .iter()
        .copied()
        .filter(|&(t, _)| !(H2 - 600_000..=H2 + 600_000).contains(&t))
        .collect();
    assert_eq!(got[0].1, expect);
    assert_eq!(db.clean_tombstones().unwrap(), 1);
    assert!(db.blocks()[0].tombstones().is_empty());
    assert_eq!(dump(&db, i64::MIN, i64::MAX, &del)[0].1, expect);
    drop(db);
    let db = Db::open(tmp.path(), opts()).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX, &del)[0].1, expect);

    // snapshot with head: a data dir that opens to the same samples
    let snap = tempfile::tempdir().unwrap();
    db.snapshot(snap.path(), true).unwrap();
    let full = dump(&db, i64::MIN, i64::MAX, &all());
    drop(db);
    let sdb = Db::open(snap.path(), opts()).unwrap();
    assert_eq!(sdb.blocks().len(), 2);
    assert_eq!(dump(&sdb, i64::MIN, i64::MAX, &all()), full);
}

#[test]
fn retention_deletes_oldest_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.retention = Duration::from_millis((2 * H2) as u64);
    let db = Db::open(tmp.path(), o).unwrap();
    let l = Labels::from_pairs(&[("__name__", "m")]);
    let mut r = None;
    // 5 ranges of data at 10 min
    for k in 0..(5 * H2 / 600_000) {
        let mut app = db.appender();
        r = Some(app.append(r, &l, k * 600_000, k as f64).unwrap());
        app.commit().unwrap();
        if k % 6 == 0 {
            db.compact().unwrap();
        }
    }
    db.compact().unwrap();
    let blocks = db.blocks();
    let newest = blocks.iter().map(|b| b.max_time()).max().unwrap();
    assert!(
        blocks.iter().all(|b| newest - b.max_time() <= 2 * H2),
        "{:?}",
        blocks
            .iter()
            .map(|b| (b.min_time(), b.max_time()))
            .collect::<Vec<_>>()
    );
    assert!(!blocks.is_empty());
}

/// `promtool tsdb dump` (Prometheus 2.42) reads what we wrote: blocks, WAL checkpoint, WAL
/// segments and head chunk files, and sees exactly our samples. Skipped without promtool.
#[test]
fn promtool_reads_our_data_dir() {
    let Some(promtool) = common::promtool() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), opts()).unwrap();
    let labels: Vec<Labels> = (0..3)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "m"),
                ("odd", "a\"b\\c\nd"),
                ("i", &i.to_string()),
            ])
        })
        .collect();
    let mut refs = [None; 3];
    // 4 h at 15 s: one block cut, the rest in the head (with full chunks in chunks_head)
    for k in 0..(2 * H2 / 15_000) {
        let mut app = db.appender();
        for i in 0..3 {
            let v = if k % 97 == 5 {
                f64::NAN
            } else {
                k as f64 * 0.5 + i as f64
            };
            refs[i] = Some(app.append(refs[i], &labels[i], k * 15_000, v).unwrap());
        }
        app.commit().unwrap();
    }
    assert_eq!(db.compact().unwrap().len(), 1);
    let ours = dump(&db, i64::MIN, i64::MAX, &all());
    db.close().unwrap();
    drop(db);
    let text = common::promtool_dump(promtool, tmp.path());
    let mut theirs: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for line in text.lines() {
        let (rest, ts) = line.rsplit_once(' ').unwrap();
        let (ls, v) = rest.rsplit_once(' ').unwrap();
        theirs
            .entry(ls.to_string())
            .or_default()
            .push((ts.parse().unwrap(), v.to_string()));
    }
    assert_eq!(theirs.len(), 3);
    for (ls, samples) in &ours {
        let mut t = theirs
            .remove(&ls.to_string())
            .unwrap_or_else(|| panic!("promtool lacks {ls}"));
        t.sort();
        t.dedup();
        assert_eq!(t.len(), samples.len(), "{ls}");
        for ((ta, va), (tb, vb)) in samples.iter().zip(&t) {
            assert_eq!(ta, tb);
            let vb = parse_value(vb);
            assert!(
                va.to_bits() == vb.to_bits() || (va.is_nan() && vb.is_nan()),
                "{ls} {ta}: {va} vs {vb}"
            );
        }
    }
}

#[test]
fn opens_prometheus_blocks_and_appends_after_them() {
    let fixture = common::shared_dir().join("fixtures/prometheus-2.42/blocks");
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&fixture, tmp.path());
    let db = Db::open(tmp.path(), opts()).unwrap();
    assert_eq!(db.blocks().len(), 4);
    assert_eq!(count(&db), 515_480);
    let end = db.blocks().iter().map(|b| b.max_time()).max().unwrap();
    // older than the newest block: out of bounds
    let l = Labels::from_pairs(&[("__name__", "late_starter_total"), ("job", "x")]);
    let mut app = db.appender();
    assert!(app.append(None, &l, end - 1, 1.0).is_err());
    app.append(None, &l, end, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(count(&db), 515_481);
    // chunk-level view holds the same number of samples
    let cq = db.chunk_querier(i64::MIN, i64::MAX).unwrap();
    let n: usize = cq
        .select_chunks(true, None, &all())
        .map(|s| {
            s.unwrap()
                .chunks
                .iter()
                .map(|c| tsdb::chunkenc::xor::num_samples(&c.data))
                .sum::<usize>()
        })
        .sum();
    assert_eq!(n, 515_481);
}

#[test]
fn concurrent_appenders_queries_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Db::open(tmp.path(), opts()).unwrap());
    const WRITERS: usize = 3;
    const STEPS: i64 = 1500; // 1500 × 10 s ≈ 4.2 h: at least one block is cut meanwhile
    let mut handles = Vec::new();
    // writers keep in step: a writer more than an hour behind the newest sample would get
    // OutOfBounds, as in Prometheus
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(WRITERS));
    for w in 0..WRITERS {
        let (db, barrier) = (db.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let ls: Vec<Labels> = (0..20)
                .map(|i| {
                    Labels::from_pairs(&[
                        ("__name__", "c"),
                        ("w", &w.to_string()),
                        ("i", &i.to_string()),
                    ])
                })
                .collect();
            let mut refs = vec![None; ls.len()];
            for k in 0..STEPS {
                barrier.wait();
                let mut app = db.appender();
                for (i, l) in ls.iter().enumerate() {
                    refs[i] = Some(app.append(refs[i], l, k * 10_000, k as f64).unwrap());
                }
                app.commit().unwrap();
            }
        }));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (_, s) in dump(&*db, i64::MIN, i64::MAX, &all()) {
                    // every series is gap-free from its first sample: values count up by one
                    assert!(s.windows(2).all(|w| w[1].1 == w[0].1 + 1.0));
                }
                n += 1;
            }
            n
        })
    };
    let compactor = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut cut = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                cut += db.compact().unwrap().len();
                std::thread::sleep(Duration::from_millis(5));
            }
            cut
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    compactor.join().unwrap();
    db.compact().unwrap();
    assert!(!db.blocks().is_empty());
    let got = dump(&*db, i64::MIN, i64::MAX, &all());
    assert_eq!(got.len(), WRITERS * 20);
    for (_, s) in &got {
        assert_eq!(s.len(), STEPS as usize);
    }
    db.close().unwrap();
    let mut app = db.appender();
    app.append(
        None,
        &Labels::from_pairs(&[("__name__", "late")]),
        STEPS * 10_000,
        1.0,
    )
    .unwrap();
    assert!(matches!(app.commit(), Err(tsdb::Error::Closed)));
}

#[test]
fn blocks_are_compacted_to_larger_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), opts()).unwrap();
    let l = Labels::from_pairs(&[("__name__", "m")]);
    let mut r = None;
    let step = 60_000;
    let n = 10 * H2 / step; // 20 h of data
    for k in 0..n {
        let mut app = db.appender();
        r = Some(app.append(r, &l, k * step, k as f64).unwrap());
        app.commit().unwrap();
        if k % 60 == 0 {
            db.compact().unwrap();
        }
    }
    db.compact().unwrap();
    let blocks = db.blocks();
    assert!(
        blocks.iter().any(|b| b.meta().compaction.level >= 2),
        "no compacted block"
    );
    assert!(blocks.iter().any(|b| b.max_time() - b.min_time() > H2));
    // no overlaps, and every sample still there exactly once
    assert!(blocks
        .windows(2)
        .all(|w| w[0].max_time() <= w[1].min_time()));
    let got = dump(&db, i64::MIN, i64::MAX, &all());
    assert_eq!(got[0].1.len() as i64, n);
    assert!(got[0]
        .1
        .iter()
        .enumerate()
        .all(|(k, s)| *s == (k as i64 * step, k as f64)));
}

#[test]
fn compact_with_querier_held_on_same_thread_puts_off_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), opts()).unwrap();
    let ls = Labels::from_pairs(&[("__name__", "m")]);
    let mut r = None;
    let step = 60_000;
    for k in 0..=(7 * H2 / 4 / step) {
        let mut app = db.appender();
        r = Some(app.append(r, &ls, k * step, k as f64).unwrap());
        app.commit().unwrap();
    }
    let before = dump(&db, i64::MIN, i64::MAX, &all());
    let held = db.querier(0, i64::MAX).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(db.compact().unwrap().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    // the block is written but the head keeps its range while the querier is open
    assert_eq!(db.blocks().len(), 1);
    assert!(db.head().min_time() < H2);
    assert_eq!(dump(&db, i64::MIN, i64::MAX, &all()), before);
    drop(held);
    // the next round truncates without writing the block again
    assert!(db.compact().unwrap().is_empty());
    assert_eq!(db.blocks().len(), 1);
    assert!(db.head().min_time() >= H2);
    assert_eq!(dump(&db, i64::MIN, i64::MAX, &all()), before);
}

/// The samples of one selected series.
fn samples_of(s: &dyn tsdb::querier::Series) -> Vec<(i64, f64)> {
    let mut it = s.iter();
    let mut v = Vec::new();
    while it.next() == ValueType::Float {
        v.push(it.at());
    }
    assert!(it.err().is_none(), "{:?}", it.err());
    v
}

#[test]
fn large_selections_are_read_window_by_window_and_hold_off_head_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), opts()).unwrap();
    // More series than a head selection window (16384), 3.5 h at 10 min: the head spans more
    // than 1.5 × 2 h, so it can be compacted.
    let n = 2 * 8192 + 100;
    let labels: Vec<Labels> = (0..n)
        .map(|i| Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{i:05}"))]))
        .collect();
    let step = 600_000;
    let mut refs = vec![None; n];
    for k in 0..=(7 * H2 / 4 / step) {
        let mut app = db.appender();
        for (i, l) in labels.iter().enumerate() {
            refs[i] = Some(
                app.append(refs[i], l, k * step, (k * 7 + i as i64) as f64)
                    .unwrap(),
            );
        }
        app.commit().unwrap();
    }
    let before = dump(&db, i64::MIN, i64::MAX, &all());
    assert_eq!(before.len(), n);
    // The querier goes at once; its series set keeps the reader registered.
    let mut set = db
        .querier(i64::MIN, i64::MAX)
        .unwrap()
        .select(true, None, &all());
    let mut got = Vec::new();
    for s in set.by_ref().take(10) {
        let s = s.unwrap();
        got.push((s.labels().clone(), samples_of(s.as_ref())));
    }
    // A block is cut, but the head keeps its range while the set may still read it.
    assert_eq!(db.compact().unwrap().len(), 1);
    assert!(db.head().min_time() < H2);
    for s in set.by_ref() {
        let s = s.unwrap();
        got.push((s.labels().clone(), samples_of(s.as_ref())));
    }
    assert!(
        got == before,
        "the windowed selection differs from the first read"
    );
    drop(set);
    assert!(db.compact().unwrap().is_empty());
    assert!(db.head().min_time() >= H2);
    // Block and head windows merged give the same series and samples.
    assert!(dump(&db, i64::MIN, i64::MAX, &all()) == before);
}
