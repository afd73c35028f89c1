//! Writing blocks with `write_block` from the fixture's raw samples, checked against the
//! blocks Prometheus wrote from the same samples and with `promtool`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use tsdb::block::Block;
use tsdb::chunkenc::ValueType;
use tsdb::compact::{chunks_from_samples, write_block, DEFAULT_BLOCK_DURATION};
use tsdb::labels::{MatchType, Matcher};
use tsdb::querier::ChunkSeries;
use tsdb::querier::Queryable;

fn dump(promtool: &str, dir: &Path) -> Vec<String> {
    // promtool opens the directory as a read-only database, which needs a WAL directory.
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    let mut lines: Vec<String> = common::promtool_dump(promtool, dir)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn write_block_from_fixture_samples_matches_prometheus() {
    let samples = openmetrics_samples();
    for fixture in fixture_block_dirs() {
        let fb = Block::open(&fixture).unwrap();
        let (mint, maxt) = (fb.min_time(), fb.max_time());
        let series = samples.iter().filter_map(|(ls, s)| {
            let part: Vec<(i64, f64)> = s
                .iter()
                .filter(|(t, _)| *t >= mint && *t < maxt)
                .map(|&(t, v)| (t, f64::from_bits(v)))
                .collect();
            // `promtool tsdb create-blocks-from` appends through a head whose chunk range is
            // twice the block duration.
            (!part.is_empty()).then(|| ChunkSeries {
                labels: ls.clone(),
                chunks: chunks_from_samples(&part, 2 * DEFAULT_BLOCK_DURATION),
            })
        });
        let tmp = tempfile::tempdir().unwrap();
        let ulid = write_block(tmp.path(), series, mint, maxt, 1, &[]).unwrap();
        let dir = tmp.path().join(ulid.to_string());
        assert!(!tmp.path().join(format!("{ulid}.tmp-for-creation")).exists());

        // Same stats, and the very same index and chunk bytes as Prometheus.
        let b = Block::open(&dir).unwrap();
        assert_eq!(b.meta().stats, fb.meta().stats);
        assert_eq!(b.meta().compaction.sources, vec![ulid]);
        assert_eq!(
            std::fs::read(dir.join("index")).unwrap(),
            std::fs::read(fixture.join("index")).unwrap()
        );
        assert_eq!(
            std::fs::read(dir.join("chunks/000001")).unwrap(),
            std::fs::read(fixture.join("chunks/000001")).unwrap()
        );
        assert_eq!(
            std::fs::read(dir.join("tombstones")).unwrap(),
            std::fs::read(fixture.join("tombstones")).unwrap()
        );

        // meta.json is written exactly as Prometheus writes it.
        let ours = std::fs::read_to_string(dir.join("meta.json")).unwrap();
        let theirs = std::fs::read_to_string(fixture.join("meta.json")).unwrap();
        assert_eq!(
            ours.replace(&ulid.to_string(), &fb.ulid().to_string()),
            theirs
        );

        // Reading it back gives the samples.
        let q = b.querier(mint, maxt - 1).unwrap();
        let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
        let mut n = 0;
        for s in q.select(true, None, &m) {
            let s = s.unwrap();
            let want: Vec<(i64, u64)> = samples[s.labels()]
                .iter()
                .copied()
                .filter(|(t, _)| *t >= mint && *t < maxt)
                .collect();
            let mut got = Vec::new();
            let mut it = s.iter();
            while it.next() == ValueType::Float {
                let (t, v) = it.at();
                got.push((t, v.to_bits()));
            }
            assert!(got == want, "{}", s.labels());
            n += got.len() as u64;
        }
        assert_eq!(n, fb.meta().stats.num_samples);

        if let Some(pt) = common::promtool() {
            let out = Command::new(pt)
                .args(["tsdb", "analyze"])
                .arg(tmp.path())
                .arg(ulid.to_string())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool tsdb analyze: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(&format!("Block ID: {ulid}")), "{text}");
            let fcopy = tempfile::tempdir().unwrap();
            common::copy_dir(&fixture, &fcopy.path().join(fixture.file_name().unwrap()));
            let ours = dump(pt, tmp.path());
            let theirs = dump(pt, fcopy.path());
            assert_eq!(ours.len() as u64, fb.meta().stats.num_samples);
            assert!(
                ours == theirs,
                "promtool dump differs for {}",
                fixture.display()
            );
        }
    }
}

#[test]
fn blocks_spanning_several_chunk_segments_read_back() {
    use tsdb::compact::{chunk_series_from_samples, BlockWriter};
    use tsdb::labels::Labels;
    let tmp = tempfile::tempdir().unwrap();
    let series: Vec<_> = (0..50)
        .map(|i| {
            let s: Vec<(i64, f64)> = (0..600).map(|k| (k * 10_000, (i * k) as f64)).collect();
            chunk_series_from_samples(
                Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{i:03}"))]),
                &s,
            )
        })
        .collect();
    let meta = BlockWriter::new(tmp.path(), 0, 6_000_000)
        .segment_size(4096)
        .write(series.clone().into_iter().map(Ok))
        .unwrap();
    let b = Block::open(tmp.path().join(meta.ulid.to_string())).unwrap();
    assert!(
        b.chunks().num_segments() > 5,
        "{} segments",
        b.chunks().num_segments()
    );
    let q = b.querier(0, 6_000_000).unwrap();
    let m = [Matcher::new(MatchType::Equal, "__name__", "m").unwrap()];
    let mut n = 0;
    for (s, want) in q.select(true, None, &m).zip(&series) {
        let s = s.unwrap();
        assert_eq!(s.labels(), &want.labels);
        let mut it = s.iter();
        let mut k = 0;
        while it.next() == ValueType::Float {
            assert_eq!(it.at().0, k * 10_000);
            k += 1;
        }
        assert_eq!(k, 600);
        n += 1;
    }
    assert_eq!(n, 50);
    assert_eq!(tsdb::block::block_dirs(tmp.path()).unwrap().len(), 1);
    if let Some(pt) = common::promtool() {
        std::fs::create_dir_all(tmp.path().join("wal")).unwrap();
        let lines = dump(pt, tmp.path());
        assert_eq!(lines.len(), 50 * 600);
    }
}

#[test]
fn empty_block_opens_and_selects_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let u = write_block(tmp.path(), Vec::new(), 0, 1000, 1, &[]).unwrap();
    let b = Block::open(tmp.path().join(u.to_string())).unwrap();
    assert_eq!(b.meta().stats.num_series, 0);
    assert_eq!(b.chunks().num_segments(), 0);
    let q = b.querier(0, 1000).unwrap();
    let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    assert_eq!(q.select(true, None, &m).count(), 0);
    assert!(q.label_names(&[], 0).unwrap().is_empty());
    if let Some(pt) = common::promtool() {
        std::fs::create_dir_all(tmp.path().join("wal")).unwrap();
        assert!(dump(pt, tmp.path()).is_empty());
    }
}

#[test]
fn block_dir_helpers_remove_leftovers_and_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let u1 = write_block(tmp.path(), Vec::new(), 0, 1000, 1, &[]).unwrap();
    let u2 = write_block(tmp.path(), Vec::new(), 1000, 2000, 1, &[]).unwrap();
    std::fs::create_dir_all(
        tmp.path()
            .join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation/chunks"),
    )
    .unwrap();
    std::fs::create_dir_all(
        tmp.path()
            .join("01ARZ3NDEKTSV4RRFFQ69G5FAW.tmp-for-deletion"),
    )
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("wal")).unwrap();
    assert_eq!(tsdb::block::block_dirs(tmp.path()).unwrap().len(), 2);
    assert_eq!(tsdb::block::remove_tmp_block_dirs(tmp.path()).unwrap(), 2);
    tsdb::block::remove_block_dir(tmp.path().join(u1.to_string())).unwrap();
    let left = tsdb::block::block_dirs(tmp.path()).unwrap();
    assert_eq!(left, vec![tmp.path().join(u2.to_string())]);
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec![u2.to_string(), "wal".to_string()]);
}
