//! Checkpoint round trip: what is kept and dropped, atomic naming, replay = checkpoint + later
//! segments, and a second checkpoint built on the first.

mod common;

use std::collections::HashMap;
use std::path::Path;

use tsdb::wal::checkpoint::{checkpoint, checkpoint_dir, delete_checkpoints, last_checkpoint};
use tsdb::wal::record::*;
use tsdb::wal::{self, Reader, Wal};
use tsdb::Labels;

fn hist(schema: i32, count: u64) -> Histogram {
    Histogram {
        counter_reset_hint: 0,
        schema,
        zero_threshold: 0.0,
        zero_count: 0,
        count,
        sum: count as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 1,
        }],
        negative_spans: vec![],
        positive_buckets: vec![count as i64],
        negative_buckets: vec![],
        custom_values: if schema == CUSTOM_BUCKETS_SCHEMA {
            vec![1.0]
        } else {
            vec![]
        },
    }
}

/// Writes series 1..=20 and, per "scrape" at t = 0, 100, …, 1900, samples of every series,
/// plus tombstones, exemplars, metadata, histograms and m-map markers.
fn write_data(w: &mut Wal, ts: std::ops::Range<i64>) {
    let mut buf = Vec::new();
    if ts.start == 0 {
        let series: Vec<_> = (1..=20u64)
            .map(|r| RefSeries {
                series_ref: r,
                labels: Labels::from_pairs(&[("__name__", "m"), ("id", &r.to_string())]),
            })
            .collect();
        encode_series(&series, &mut buf);
        w.log(&[&buf]).unwrap();
    }
    for step in ts {
        let t = step * 100;
        let samples: Vec<_> = (1..=20u64)
            .map(|r| RefSample {
                series_ref: r,
                t,
                v: (r as i64 * t) as f64,
            })
            .collect();
        let mut recs = Vec::new();
        encode_samples(&samples, &mut buf);
        recs.push(buf.clone());
        if step % 5 == 0 {
            encode_tombstones(
                &[
                    RefTombstone {
                        series_ref: 2,
                        mint: t,
                        maxt: t + 10,
                    },
                    RefTombstone {
                        series_ref: 3,
                        mint: t,
                        maxt: t + 10,
                    },
                ],
                &mut buf,
            );
            recs.push(buf.clone());
            encode_exemplars(
                &[RefExemplar {
                    series_ref: 4,
                    t,
                    v: 1.0,
                    labels: Labels::from_pairs(&[("trace", &t.to_string())]),
                }],
                &mut buf,
            );
            recs.push(buf.clone());
            encode_metadata(
                &[
                    RefMetadata {
                        series_ref: 4,
                        metric_type: 1,
                        unit: "u".into(),
                        help: format!("help at {t}"),
                    },
                    RefMetadata {
                        series_ref: 5,
                        metric_type: 2,
                        unit: String::new(),
                        help: format!("h {t}"),
                    },
                ],
                &mut buf,
            );
            recs.push(buf.clone());
            let hs = vec![
                RefHistogramSample {
                    series_ref: 6,
                    t,
                    h: hist(1, step as u64),
                },
                RefHistogramSample {
                    series_ref: 8,
                    t,
                    h: hist(CUSTOM_BUCKETS_SCHEMA, step as u64),
                },
            ];
            encode_histogram_samples(&hs, false, &mut buf);
            recs.push(buf.clone());
            encode_histogram_samples(&hs, true, &mut buf);
            recs.push(buf.clone());
            encode_mmap_markers(
                &[RefMmapMarker {
                    series_ref: 1,
                    chunk_ref: 1 << 32 | 8,
                }],
                &mut buf,
            );
            recs.push(buf.clone());
        }
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        w.log(&refs).unwrap();
    }
}

#[derive(Default, Debug)]
struct Contents {
    series: Vec<u64>,
    samples: Vec<RefSample>,
    tombstones: Vec<RefTombstone>,
    exemplars: Vec<RefExemplar>,
    metadata: Vec<RefMetadata>,
    histograms: Vec<RefHistogramSample>,
    markers: usize,
}

fn read(mut r: Reader) -> Contents {
    let mut c = Contents::default();
    while let Some((_, _, rec)) = r.next().unwrap() {
        match decode(rec).unwrap() {
            Record::Series(s) => c.series.extend(s.iter().map(|s| s.series_ref)),
            Record::Samples(s) => c.samples.extend(s),
            Record::Tombstones(s) => c.tombstones.extend(s),
            Record::Exemplars(s) => c.exemplars.extend(s),
            Record::Metadata(s) => c.metadata.extend(s),
            Record::HistogramSamples(s) => c.histograms.extend(s),
            Record::MmapMarkers(_) => c.markers += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    c
}

fn no_tmp_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "left {name}");
    }
}

#[test]
fn checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 2, true);
    write_data(&mut w, 0..10);
    w.next_segment().unwrap();
    let to = w.current_segment() - 1;
    write_data(&mut w, 10..20);
    let keep = |r: u64| r.is_multiple_of(2);
    // A leftover temporary checkpoint from a crash is cleaned up.
    std::fs::create_dir(dir.path().join("checkpoint.00000000.tmp")).unwrap();

    let stats = checkpoint(dir.path(), 0, to, keep, 500).unwrap();
    no_tmp_dirs(dir.path());
    let cp = checkpoint_dir(dir.path(), to);
    assert_eq!(
        cp.file_name().unwrap().to_str().unwrap(),
        format!("checkpoint.{to:08}")
    );
    assert_eq!(last_checkpoint(dir.path()).unwrap(), Some((cp.clone(), to)));
    assert_eq!(stats.total_series, 20);
    assert_eq!(stats.dropped_series, 10);
    assert_eq!(stats.total_samples, 10 * 20 + 2 * 2);

    let c = read(Reader::segments(&cp, None, None).unwrap());
    assert_eq!(
        c.series,
        (1..=20).filter(|r| r % 2 == 0).collect::<Vec<_>>()
    );
    // Samples are kept by time only (their series may come back in a later segment).
    assert_eq!(c.samples.len(), 5 * 20);
    assert!(c
        .samples
        .iter()
        .all(|s| s.t >= 500 && s.v == (s.series_ref as i64 * s.t) as f64));
    // Tombstones of kept series only (2, not 3), with maxt >= mint.
    assert_eq!(
        c.tombstones,
        vec![RefTombstone {
            series_ref: 2,
            mint: 500,
            maxt: 510
        }]
    );
    assert_eq!(c.exemplars.len(), 1);
    assert_eq!(c.exemplars[0].t, 500);
    // Latest metadata of kept series only.
    assert_eq!(
        c.metadata,
        vec![RefMetadata {
            series_ref: 4,
            metric_type: 1,
            unit: "u".into(),
            help: "help at 500".into()
        }]
    );
    // Both histogram kinds kept from t >= 500.
    let mut hs: Vec<_> = c
        .histograms
        .iter()
        .map(|h| (h.series_ref, h.t, h.h.schema))
        .collect();
    hs.sort();
    assert_eq!(hs, vec![(6, 500, 1), (8, 500, CUSTOM_BUCKETS_SCHEMA)]);
    assert_eq!(c.markers, 0);

    // The caller truncates the WAL; replay = checkpoint + later segments.
    w.truncate(to + 1).unwrap();
    delete_checkpoints(dir.path(), to).unwrap();
    let all = read(Reader::open(dir.path()).unwrap());
    assert_eq!(all.samples.len(), 5 * 20 + 10 * 20);
    assert!(all.samples.windows(2).all(|p| p[0].t <= p[1].t));
    assert_eq!(all.markers, 2);

    // A second checkpoint reads the first one plus the segments after it.
    write_data(&mut w, 20..25);
    w.next_segment().unwrap();
    let to2 = w.current_segment() - 1;
    let keep2 = |r: u64| r.is_multiple_of(4);
    checkpoint(dir.path(), 0, to2, keep2, 1500).unwrap();
    let cp2 = checkpoint_dir(dir.path(), to2);
    let c2 = read(Reader::segments(&cp2, None, None).unwrap());
    assert_eq!(c2.series, vec![4, 8, 12, 16, 20]);
    assert_eq!(c2.samples.len(), 10 * 20);
    assert!(c2.samples.iter().all(|s| s.t >= 1500));
    assert_eq!(c2.metadata.len(), 1);
    assert_eq!(c2.metadata[0].help, "help at 2000");
    w.truncate(to2 + 1).unwrap();
    delete_checkpoints(dir.path(), to2).unwrap();
    assert!(!cp.exists());
    assert_eq!(
        last_checkpoint(dir.path()).unwrap(),
        Some((cp2.clone(), to2))
    );
    let segs = wal::list_segments(dir.path()).unwrap();
    assert_eq!(segs.first().copied(), Some(to2 + 1));

    // Replay: every series from the checkpoint, samples without gaps.
    let all = read(Reader::open(dir.path()).unwrap());
    let mut per_t: HashMap<i64, usize> = HashMap::new();
    for s in &all.samples {
        *per_t.entry(s.t).or_default() += 1;
    }
    assert_eq!(per_t.len(), 10);
    assert!(per_t.values().all(|&n| n == 20));
}

#[test]
fn checkpoint_rejects_gap_after_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 2, false);
    write_data(&mut w, 0..3);
    for _ in 0..4 {
        w.next_segment().unwrap();
    }
    checkpoint(dir.path(), 0, 1, |_| true, 0).unwrap();
    assert!(checkpoint(dir.path(), 3, 3, |_| true, 0).is_err());
    no_tmp_dirs(dir.path());
    // from = 2 continues the last checkpoint.
    let st = checkpoint(dir.path(), 2, 3, |_| true, 0).unwrap();
    assert_eq!(st.total_series, 20);
}

#[test]
fn corrupt_checkpoint_is_repaired_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = common::open_wal(dir.path(), 2, false);
    write_data(&mut w, 0..10);
    let to = w.next_segment().unwrap() - 1;
    write_data(&mut w, 10..12);
    checkpoint(dir.path(), 0, to, |_| true, 0).unwrap();
    w.truncate(to + 1).unwrap();
    w.close().unwrap();
    let cp = checkpoint_dir(dir.path(), to);
    let seg = wal::segment_name(&cp, 0);
    let mut b = std::fs::read(&seg).unwrap();
    // Damage the end of the last record, the metadata (series and samples come first and
    // stay intact).
    let at = b.iter().rposition(|&x| x != 0).unwrap() - 5;
    b[at] ^= 0xff;
    std::fs::write(&seg, &b).unwrap();

    let mut r = Reader::open(dir.path()).unwrap();
    let err = loop {
        match r.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("damage not found"),
            Err(tsdb::Error::WalCorruption(c)) => break c,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(err.dir, cp);
    assert!(err.offset <= at as u64);
    wal::repair(dir.path(), &err).unwrap();
    // The checkpoint now reads clean up to the damage, followed by the later segments.
    let c = read(Reader::open(dir.path()).unwrap());
    assert_eq!(c.series.len(), 20);
    assert!(
        c.samples.iter().any(|s| s.t == 1100),
        "segments after the checkpoint are kept"
    );
    assert_eq!(c.samples.len(), 12 * 20);
    // The checkpoint's metadata record (t = 500) was damaged and dropped; only the later
    // segments' metadata (t = 1000) remains.
    assert_eq!(c.metadata.len(), 2);
    assert!(
        c.metadata.iter().all(|m| m.help.ends_with(" 1000")),
        "{:?}",
        c.metadata
    );
}
