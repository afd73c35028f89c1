//! Reads the WAL and head chunk file written by a real Prometheus 2.42 and checks that WAL
//! samples plus m-mapped head chunks give exactly the samples of `promtool tsdb dump`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;

mod common;

use tsdb::chunkenc::{ValueType, XorIterator};
use tsdb::head::head_chunks::ChunkDiskMapper;
use tsdb::wal::record::{self, Record};
use tsdb::wal::Reader;
use tsdb::Labels;

fn datadir() -> PathBuf {
    common::shared_dir().join("fixtures/prometheus-2.42/wal-datadir")
}

/// All NaNs compare equal, everything else by bits.
fn vbits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

struct WalContents {
    series: HashMap<u64, Labels>,
    samples: Vec<record::RefSample>,
    counts: BTreeMap<&'static str, usize>,
    records: usize,
}

fn read_wal() -> WalContents {
    let mut r = Reader::open(datadir().join("data/wal")).unwrap();
    let mut w = WalContents {
        series: HashMap::new(),
        samples: Vec::new(),
        counts: BTreeMap::new(),
        records: 0,
    };
    let mut last_off = None;
    while let Some((seg, off, rec)) = r.next().unwrap() {
        assert_eq!(seg, 0);
        assert!(last_off.is_none_or(|l| off > l));
        last_off = Some(off);
        w.records += 1;
        match record::decode(rec).unwrap() {
            Record::Series(s) => {
                *w.counts.entry("series").or_default() += 1;
                for s in s {
                    assert!(
                        w.series.insert(s.series_ref, s.labels).is_none(),
                        "series defined twice"
                    );
                }
            }
            Record::Samples(s) => {
                *w.counts.entry("samples").or_default() += 1;
                w.samples.extend(s);
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    w
}

#[test]
fn wal_segment_of_prometheus_2_42() {
    let w = read_wal();
    assert_eq!(w.records, 164);
    assert_eq!(w.counts["series"], 3);
    assert_eq!(w.counts["samples"], 161);
    assert_eq!(w.series.len(), 360);
    for ls in w.series.values() {
        assert_eq!(ls.get("job"), Some("prometheus"));
        assert_eq!(ls.get("instance"), Some("127.0.0.1:19090"));
        assert!(ls.metric_name().is_some());
    }
    // Every sample belongs to a known series, timestamps in the documented range.
    for s in &w.samples {
        assert!(w.series.contains_key(&s.series_ref));
        assert!((1795677726510..=1795677886510).contains(&s.t), "t {}", s.t);
    }
    // Also through the raw decoders with reused buffers.
    let mut r = Reader::open(datadir().join("data/wal")).unwrap();
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some((_, _, rec)) = r.next().unwrap() {
        if record::record_type(rec) == record::RecordType::Samples {
            buf.clear();
            record::decode_samples(rec, &mut buf).unwrap();
            n += buf.len();
        }
    }
    assert_eq!(n, w.samples.len());
}

#[test]
fn wal_plus_head_chunks_equal_promtool_dump() {
    let w = read_wal();
    // The fixture is read-only: open a copy (opening may repair files).
    let tmp = tempfile::tempdir().unwrap();
    let src = datadir().join("data/chunks_head");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    let mut cdm = ChunkDiskMapper::open(tmp.path()).unwrap();
    assert!(cdm.corruptions().is_empty());
    assert_eq!(cdm.file_seqs(), vec![1]);

    let mut chunks = Vec::new();
    cdm.iterate_all(|s, r, mint, maxt, n, enc| {
        chunks.push((s, r, mint, maxt, n, enc));
        Ok(())
    })
    .unwrap();
    assert!(!chunks.is_empty());

    // (labels, t) -> value from the chunks; the largest chunk maxt per series.
    let mut got: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut chunk_maxt: HashMap<u64, i64> = HashMap::new();
    for &(s, r, mint, maxt, n, enc) in &chunks {
        assert_eq!(enc, 1, "XOR chunk");
        let ls = w
            .series
            .get(&s)
            .unwrap_or_else(|| panic!("chunk of unknown series {s}"));
        let data = cdm.chunk(r).unwrap();
        let mut it = XorIterator::new(data);
        let mut k = 0;
        let (mut first, mut last) = (None, 0);
        while it.next() == ValueType::Float {
            let (t, v) = it.at();
            first.get_or_insert(t);
            last = t;
            got.insert((ls.to_string(), t), vbits(v));
            k += 1;
        }
        assert!(it.err().is_none());
        assert_eq!(k, n as usize);
        assert_eq!((first, last), (Some(mint), maxt));
        let e = chunk_maxt.entry(s).or_insert(i64::MIN);
        *e = (*e).max(maxt);
    }
    // WAL samples: the ones covered by a chunk must agree with it; the rest are added.
    let mut overlap = 0;
    for s in &w.samples {
        let key = (w.series[&s.series_ref].to_string(), s.t);
        if chunk_maxt.get(&s.series_ref).is_some_and(|&m| s.t <= m) {
            assert_eq!(
                got.get(&key),
                Some(&vbits(s.v)),
                "WAL sample disagrees with chunk at {key:?}"
            );
            overlap += 1;
        } else {
            assert!(
                got.insert(key, vbits(s.v)).is_none(),
                "duplicate WAL sample"
            );
        }
    }
    assert!(overlap > 0);

    let mut gz =
        flate2::read::GzDecoder::new(std::fs::File::open(datadir().join("dump.txt.gz")).unwrap());
    let mut text = String::new();
    gz.read_to_string(&mut text).unwrap();
    let mut want: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.rsplitn(3, ' ');
        let t: i64 = parts.next().unwrap().parse().unwrap();
        let v = parts.next().unwrap();
        let v: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let labels = parts.next().unwrap().to_string();
        assert!(
            want.insert((labels, t), vbits(v)).is_none(),
            "duplicate line {line}"
        );
        lines += 1;
    }
    assert_eq!(lines, 57_130);
    assert_eq!(got.len(), want.len());
    // Read-only access to the fixture itself sees the same chunks.
    let mut ro = ChunkDiskMapper::open_read_only(&src).unwrap();
    let mut ro_chunks = Vec::new();
    ro.iterate_all(|s, r, mint, maxt, n, enc| {
        ro_chunks.push((s, r, mint, maxt, n, enc));
        Ok(())
    })
    .unwrap();
    assert_eq!(ro_chunks, chunks);
    let diff: Vec<_> = got
        .iter()
        .filter(|(k, v)| want.get(*k) != Some(*v))
        .take(5)
        .collect();
    assert!(
        diff.is_empty(),
        "samples differ from the dump, e.g. {diff:?}"
    );
    assert_eq!(got, want);
}
