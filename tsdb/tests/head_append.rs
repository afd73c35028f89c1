//! Head: appender errors, chunk cutting, selection and label queries.

use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use tsdb::chunkenc::{stale_nan, ValueType};
use tsdb::head::{Head, HeadOptions, MemChunkStore, SeriesRef, WalLog};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::{MemQueryable, Queryable, VecSeries};
use tsdb::Error;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn m(k: MatchType, n: &str, v: &str) -> Matcher {
    Matcher::new(k, n, v).unwrap()
}

fn collect(
    q: &dyn Queryable,
    mint: i64,
    maxt: i64,
    ms: &[Matcher],
) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let qr = q.querier(mint, maxt).unwrap();
    qr.select(true, None, ms)
        .map(|s| {
            let s = s.unwrap();
            let mut it = s.iter();
            let mut v = Vec::new();
            while it.next() == ValueType::Float {
                v.push(it.at());
            }
            assert!(it.err().is_none());
            (s.labels().clone(), v)
        })
        .collect()
}

#[test]
fn append_errors_follow_prometheus() {
    let h = Head::in_memory();
    let a = ls(&[("__name__", "x")]);
    let mut app = h.appender();
    let r = app.append(None, &a, 1000, 1.0).unwrap();
    app.commit().unwrap();

    let mut app = h.appender();
    assert!(matches!(
        app.append(Some(r), &a, 999, 1.0),
        Err(Error::OutOfOrderSample)
    ));
    assert!(matches!(
        app.append(Some(r), &a, 1000, 2.0),
        Err(Error::DuplicateSampleForTimestamp)
    ));
    // identical duplicate is accepted and ignored
    app.append(Some(r), &a, 1000, 1.0).unwrap();
    // stale markers are values: a NaN with other bits is a duplicate of nothing
    app.append(Some(r), &a, 2000, stale_nan()).unwrap();
    app.commit().unwrap();
    let got = collect(
        &h,
        i64::MIN,
        i64::MAX,
        &[m(MatchType::Equal, "__name__", "x")],
    );
    assert_eq!(got[0].1.len(), 2);
    assert_eq!(got[0].1[1].1.to_bits(), stale_nan().to_bits());
    let mut app = h.appender();
    assert!(matches!(
        app.append(Some(r), &a, 2000, 5.0),
        Err(Error::DuplicateSampleForTimestamp)
    ));
    app.append(Some(r), &a, 2000, stale_nan()).unwrap();

    // out of bounds: more than half a chunk range behind the newest sample
    let half = HeadOptions::default().chunk_range / 2;
    let mut app = h.appender();
    app.append(None, &ls(&[("__name__", "y")]), 10 * half, 1.0)
        .unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    assert!(matches!(
        app.append(None, &ls(&[("__name__", "z")]), 9 * half - 1, 1.0),
        Err(Error::OutOfBounds)
    ));
    app.append(None, &ls(&[("__name__", "z")]), 9 * half, 1.0)
        .unwrap();

    // after truncation, older samples are out of bounds too
    h.truncate(10 * half).unwrap();
    let mut app = h.appender();
    assert!(matches!(
        app.append(None, &a, 10 * half - 1, 1.0),
        Err(Error::OutOfBounds)
    ));
}

#[test]
fn samples_invisible_until_commit_and_rollback_discards() {
    let h = Head::in_memory();
    let a = ls(&[("__name__", "x")]);
    let mut app = h.appender();
    app.append(None, &a, 1, 1.0).unwrap();
    assert!(collect(&h, 0, 10, &[m(MatchType::Equal, "__name__", "x")]).is_empty());
    app.rollback().unwrap();
    assert!(collect(&h, 0, 10, &[m(MatchType::Equal, "__name__", "x")]).is_empty());
    let mut app = h.appender();
    app.append(None, &a, 1, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(
        collect(&h, 0, 10, &[m(MatchType::Equal, "__name__", "x")])[0].1,
        vec![(1, 1.0)]
    );
}

#[test]
fn in_batch_out_of_order_samples_dropped_at_commit() {
    let h = Head::in_memory();
    let a = ls(&[("__name__", "x")]);
    let mut app = h.appender();
    app.append(None, &a, 10, 1.0).unwrap();
    app.append(None, &a, 5, 2.0).unwrap();
    app.append(None, &a, 20, 3.0).unwrap();
    app.commit().unwrap();
    assert_eq!(
        collect(&h, 0, 100, &[m(MatchType::Equal, "__name__", "x")])[0].1,
        vec![(10, 1.0), (20, 3.0)]
    );
}

#[test]
fn chunks_cut_at_120_samples_and_range_boundaries() {
    let h = Head::in_memory();
    let a = ls(&[("__name__", "x")]);
    let mut r = None;
    // 15 s interval over 3 h starting at 0: the first 2 h range gives 4 chunks of 120.
    for i in 0..720i64 {
        let mut app = h.appender();
        r = Some(app.append(r, &a, i * 15_000, i as f64).unwrap());
        app.commit().unwrap();
    }
    let cq = h.chunk_querier(i64::MIN, i64::MAX);
    let cs: Vec<_> = cq
        .select_chunks(true, None, &[m(MatchType::Equal, "__name__", "x")])
        .map(|c| c.unwrap())
        .collect();
    let sizes: Vec<usize> = cs[0]
        .chunks
        .iter()
        .map(|c| tsdb::chunkenc::xor::num_samples(&c.data))
        .collect();
    assert_eq!(&sizes[..4], &[120, 120, 120, 120]);
    let range = HeadOptions::default().chunk_range;
    assert_eq!(cs[0].chunks[4].min_time, range);
    assert!(cs[0]
        .chunks
        .iter()
        .all(|c| c.min_time / range == c.max_time / range));
    assert_eq!(sizes.iter().sum::<usize>(), 720);
    assert_eq!(h.stats().num_chunks, 6);
}

#[test]
fn select_matches_reference_implementation() {
    let h = Head::in_memory();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut reference: Vec<VecSeries> = Vec::new();
    let mut refs: Vec<Option<SeriesRef>> = Vec::new();
    for i in 0..50 {
        let labels = ls(&[
            ("__name__", if i % 3 == 0 { "a" } else { "b" }),
            ("job", &format!("j{}", i % 4)),
            ("inst", &format!("i{i}")),
            ("opt", if i % 5 == 0 { "" } else { "set" }),
        ]);
        reference.push(VecSeries {
            labels,
            samples: Vec::new(),
        });
        refs.push(None);
    }
    let mut t = 0i64;
    for _ in 0..400 {
        t += rng.gen_range(1..20_000);
        let mut app = h.appender();
        for (i, s) in reference.iter_mut().enumerate() {
            if rng.gen_bool(0.7) {
                let v: f64 = rng.gen_range(-100.0..100.0);
                refs[i] = Some(app.append(refs[i], &s.labels, t, v).unwrap());
                s.samples.push((t, v));
            }
        }
        app.commit().unwrap();
    }
    let memq = MemQueryable::new(reference);
    let sets: Vec<Vec<Matcher>> = vec![
        vec![m(MatchType::Equal, "__name__", "a")],
        vec![
            m(MatchType::Equal, "__name__", "b"),
            m(MatchType::NotEqual, "job", "j1"),
        ],
        vec![
            m(MatchType::Regexp, "job", "j[12]"),
            m(MatchType::Equal, "opt", ""),
        ],
        vec![
            m(MatchType::NotRegexp, "inst", "i1.*"),
            m(MatchType::Regexp, "opt", ".+"),
        ],
        vec![m(MatchType::Regexp, "__name__", ".+")],
    ];
    for ms in &sets {
        for (lo, hi) in [
            (i64::MIN, i64::MAX),
            (t / 3, t / 2),
            (t / 2, t / 2 + 10_000),
        ] {
            assert_eq!(
                collect(&h, lo, hi, ms),
                collect(&memq, lo, hi, ms),
                "matchers {ms:?} range {lo}..{hi}"
            );
        }
        let (hq, mq) = (h.querier(0, t).unwrap(), memq.querier(0, t).unwrap());
        assert_eq!(
            hq.label_values("job", ms, 0).unwrap(),
            mq.label_values("job", ms, 0).unwrap()
        );
        assert_eq!(
            hq.label_names(ms, 0).unwrap(),
            mq.label_names(ms, 0).unwrap()
        );
    }
    let hq = h.querier(0, t).unwrap();
    assert_eq!(hq.label_values("job", &[], 2).unwrap(), vec!["j0", "j1"]);
    assert_eq!(
        hq.label_names(&[], 0).unwrap(),
        vec!["__name__", "inst", "job", "opt"]
    );

    // seek across chunk boundaries agrees with a linear scan
    let qr = h.querier(i64::MIN, i64::MAX).unwrap();
    for s in qr.select(false, None, &[m(MatchType::Equal, "__name__", "a")]) {
        let s = s.unwrap();
        let mut all = Vec::new();
        let mut it = s.iter();
        while it.next() == ValueType::Float {
            all.push(it.at());
        }
        for probe in [0, t / 4, t / 2, t - 1, t + 1] {
            let mut it = s.iter();
            let want = all.iter().find(|x| x.0 >= probe).copied();
            match it.seek(probe) {
                ValueType::Float => assert_eq!(Some(it.at()), want),
                _ => assert_eq!(want, None),
            }
        }
    }
}

type Logged = (Vec<(SeriesRef, Labels)>, Vec<(SeriesRef, i64, f64)>);

#[derive(Default)]
struct RecordingWal {
    log: Mutex<Vec<Logged>>,
    fail: std::sync::atomic::AtomicBool,
}

impl WalLog for RecordingWal {
    fn log(
        &self,
        series: &[(SeriesRef, Labels)],
        samples: &[(SeriesRef, i64, f64)],
    ) -> tsdb::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Other("disk full".into()));
        }
        self.log
            .lock()
            .unwrap()
            .push((series.to_vec(), samples.to_vec()));
        Ok(())
    }
}

#[test]
fn commit_logs_series_once_then_samples_and_wal_failure_hides_batch() {
    let h = Head::new(HeadOptions::default(), Arc::new(MemChunkStore::default())).unwrap();
    let wal = Arc::new(RecordingWal::default());
    h.set_wal(Some(wal.clone()));
    let a = ls(&[("__name__", "x")]);
    let b = ls(&[("__name__", "y")]);
    let mut app = h.appender();
    let ra = app.append(None, &a, 1, 1.0).unwrap();
    let rb = app.append(None, &b, 1, 2.0).unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    app.append(Some(ra), &a, 2, 1.0).unwrap();
    app.commit().unwrap();
    {
        let log = wal.log.lock().unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].0, vec![(ra, a.clone()), (rb, b.clone())]);
        assert_eq!(log[0].1, vec![(ra, 1, 1.0), (rb, 1, 2.0)]);
        assert!(log[1].0.is_empty());
        assert_eq!(log[1].1, vec![(ra, 2, 1.0)]);
    }
    wal.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut app = h.appender();
    app.append(Some(ra), &a, 3, 1.0).unwrap();
    assert!(app.commit().is_err());
    let got = collect(&h, 0, 10, &[m(MatchType::Equal, "__name__", "x")]);
    assert_eq!(got[0].1, vec![(1, 1.0), (2, 1.0)]);
}

#[test]
fn truncate_removes_old_chunks_and_empty_series() {
    let h = Head::in_memory();
    let range = HeadOptions::default().chunk_range;
    let old = ls(&[("__name__", "old")]);
    let new = ls(&[("__name__", "new")]);
    let mut app = h.appender();
    app.append(None, &old, 1000, 1.0).unwrap();
    app.append(None, &new, 1000, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    app.append(None, &new, range + 1000, 2.0).unwrap();
    app.commit().unwrap();
    assert_eq!(h.truncate(range).unwrap(), 1);
    assert_eq!(h.num_series(), 1);
    assert_eq!(h.min_time(), range + 1000);
    let q = h.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(q.label_values("__name__", &[], 0).unwrap(), vec!["new"]);
    assert_eq!(
        collect(
            &h,
            i64::MIN,
            i64::MAX,
            &[m(MatchType::Regexp, "__name__", ".+")]
        )[0]
        .1,
        vec![(range + 1000, 2.0)]
    );
    // the removed series can be created again
    let mut app = h.appender();
    app.append(None, &old, range + 2000, 3.0).unwrap();
    app.commit().unwrap();
    assert_eq!(h.num_series(), 2);
}

#[test]
fn delete_removes_range_across_chunks() {
    let h = Head::in_memory();
    let a = ls(&[("__name__", "x"), ("k", "1")]);
    let b = ls(&[("__name__", "x"), ("k", "2")]);
    let mut ra = None;
    let mut rb = None;
    for i in 0..500i64 {
        let mut app = h.appender();
        ra = Some(app.append(ra, &a, i * 1000, i as f64).unwrap());
        rb = Some(app.append(rb, &b, i * 1000, i as f64).unwrap());
        app.commit().unwrap();
    }
    let deleted = h
        .delete(100_000, 299_000, &[m(MatchType::Equal, "k", "1")])
        .unwrap();
    assert_eq!(deleted, vec![ra.unwrap()]);
    let got = collect(
        &h,
        i64::MIN,
        i64::MAX,
        &[m(MatchType::Equal, "__name__", "x")],
    );
    let want_a: Vec<(i64, f64)> = (0..500i64)
        .filter(|i| !(100..300).contains(i))
        .map(|i| (i * 1000, i as f64))
        .collect();
    assert_eq!(got[0].1, want_a);
    assert_eq!(got[1].1.len(), 500);
    // appending continues after the rewrite
    let mut app = h.appender();
    app.append(ra, &a, 500_000, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(
        collect(&h, 499_000, i64::MAX, &[m(MatchType::Equal, "k", "1")])[0]
            .1
            .len(),
        2
    );
    // nothing matched in range → nothing deleted
    assert!(h
        .delete(10_000_000, 20_000_000, &[m(MatchType::Equal, "k", "1")])
        .unwrap()
        .is_empty());
}

#[test]
fn series_created_by_appender_survives_concurrent_truncation() {
    let h = Head::in_memory();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Arc::new(std::sync::Barrier::new(2));
    let truncator = {
        let (h, stop, started) = (h.clone(), stop.clone(), started.clone());
        std::thread::spawn(move || {
            started.wait();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                h.truncate(0).unwrap();
            }
        })
    };
    started.wait();
    let n = 20_000;
    for i in 0..n {
        let mut app = h.appender();
        let l = ls(&[("__name__", "m"), ("i", &i.to_string())]);
        app.append(None, &l, 1000 + i, i as f64).unwrap();
        app.commit().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    truncator.join().unwrap();
    let got = collect(
        &h,
        i64::MIN,
        i64::MAX,
        &[m(MatchType::Equal, "__name__", "m")],
    );
    assert_eq!(got.len(), n as usize);
    assert_eq!(h.num_series(), n as u64);
    for (_, samples) in &got {
        assert_eq!(samples.len(), 1);
    }
}
