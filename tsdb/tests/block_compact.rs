//! Compaction: merging overlapping and adjacent blocks, and the leveled planner.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use tsdb::block::{Block, BlockMeta};
use tsdb::chunkenc::ValueType;
use tsdb::compact::{chunk_series_from_samples, write_block, Compactor, DirMeta};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::Queryable;

fn read_all(b: &Block) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let q = b.querier(i64::MIN, i64::MAX).unwrap();
    let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    let mut out = BTreeMap::new();
    for s in q.select(true, None, &m) {
        let s = s.unwrap();
        let mut v = Vec::new();
        let mut it = s.iter();
        while it.next() == ValueType::Float {
            let (t, x) = it.at();
            v.push((t, x.to_bits()));
        }
        assert!(it.err().is_none());
        out.insert(s.labels().clone(), v);
    }
    out
}

fn block_of(parent: &Path, series: &[(&str, Vec<(i64, f64)>)], mint: i64, maxt: i64) -> PathBuf {
    let mut cs: Vec<_> = series
        .iter()
        .map(|(n, s)| chunk_series_from_samples(Labels::from_pairs(&[("__name__", *n)]), s))
        .collect();
    cs.sort_by(|a, b| a.labels.cmp(&b.labels));
    let u = write_block(parent, cs, mint, maxt, 1, &[]).unwrap();
    parent.join(u.to_string())
}

#[test]
fn overlapping_blocks_merge_to_the_union_of_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let a: Vec<(i64, f64)> = (0..=300).map(|i| (i * 10, 1.0)).collect();
    let b: Vec<(i64, f64)> = (150..=450).map(|i| (i * 10, 2.0)).collect();
    let da = block_of(
        tmp.path(),
        &[("s1", a.clone()), ("s2", vec![(5, 5.0)])],
        0,
        3001,
    );
    let db = block_of(
        tmp.path(),
        &[("s1", b.clone()), ("s3", vec![(1507, 7.0)])],
        1500,
        4501,
    );
    let (ba, bb) = (Block::open(&da).unwrap(), Block::open(&db).unwrap());

    let c = Compactor::with_max_block_duration(i64::MAX);
    let dms = vec![
        DirMeta {
            dir: da.clone(),
            meta: ba.meta().clone(),
        },
        DirMeta {
            dir: db.clone(),
            meta: bb.meta().clone(),
        },
    ];
    assert_eq!(c.plan(dms), vec![da.clone(), db.clone()]);

    let out = tempfile::tempdir().unwrap();
    let u = c
        .compact(out.path(), &[bb.clone(), ba.clone()])
        .unwrap()
        .unwrap();
    let m = Block::open(out.path().join(u.to_string())).unwrap();
    let meta = m.meta();
    assert_eq!((meta.min_time, meta.max_time), (0, 4501));
    assert_eq!(meta.compaction.level, 2);
    let mut srcs = vec![ba.ulid(), bb.ulid()];
    srcs.sort();
    assert_eq!(meta.compaction.sources, srcs);
    assert_eq!(meta.compaction.parents.len(), 2);
    assert_eq!(meta.compaction.parents[0].ulid, ba.ulid());

    let got = read_all(&m);
    let s1 = &got[&Labels::from_pairs(&[("__name__", "s1")])];
    // union with equal timestamps kept once, the earlier block's value winning
    assert_eq!(s1.len(), 451);
    for (i, (t, v)) in s1.iter().enumerate() {
        assert_eq!(*t, i as i64 * 10);
        let want = if *t <= 3000 { 1.0 } else { 2.0 };
        assert_eq!(f64::from_bits(*v), want, "t={t}");
    }
    assert_eq!(got.len(), 3);
    assert_eq!(meta.stats.num_samples, 453);
    assert_eq!(meta.stats.num_series, 3);
    // merged overlapping chunks are re-cut at 120 samples
    let chunks = m
        .index()
        .series_labels(tsdb::index::postings::collect(m.index().all_postings().unwrap())[0])
        .unwrap()
        .1;
    assert!(chunks.len() >= 4);
    for c in &chunks {
        assert!(m.chunk_samples(c).unwrap().len() <= 240);
    }

    if Path::new("/usr/bin/promtool").exists() {
        let st = std::process::Command::new("/usr/bin/promtool")
            .args(["tsdb", "analyze"])
            .arg(out.path())
            .arg(u.to_string())
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    } else {
        println!("skipping promtool analyze: /usr/bin/promtool is not installed");
    }
}

#[test]
fn compacting_the_fixture_blocks_keeps_every_sample_and_chunk() {
    let blocks: Vec<Block> = fixture_block_dirs()
        .iter()
        .map(|d| Block::open(d).unwrap())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let c = Compactor::with_max_block_duration(54 * 3_600_000);
    let u = c.compact(tmp.path(), &blocks).unwrap().unwrap();
    let m = Block::open(tmp.path().join(u.to_string())).unwrap();
    let want = openmetrics_samples();
    let got = read_all(&m);
    assert_eq!(got.len(), want.len());
    for (ls, w) in &want {
        assert!(&got[ls] == w, "{ls}");
    }
    let sum = |f: fn(&BlockMeta) -> u64| blocks.iter().map(|b| f(b.meta())).sum::<u64>();
    assert_eq!(m.meta().stats.num_chunks, sum(|m| m.stats.num_chunks));
    assert_eq!(m.meta().stats.num_samples, 515_480);
    assert_eq!(m.meta().stats.num_series, 269);
    assert_eq!(m.meta().compaction.level, 2);
    assert_eq!(m.meta().compaction.sources.len(), 4);
}

fn dm(name: &str, mint: i64, maxt: i64) -> DirMeta {
    let mut meta = BlockMeta::new(ulid::Ulid::new(), mint, maxt);
    meta.stats.num_series = 10;
    DirMeta {
        dir: PathBuf::from(name),
        meta,
    }
}

fn plan(c: &Compactor, dms: Vec<DirMeta>) -> Vec<String> {
    c.plan(dms)
        .into_iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn planner_picks_what_prometheus_picks() {
    let c = Compactor::new(vec![20, 60, 180, 540, 1620]);
    let none: Vec<String> = vec![];
    assert_eq!(plan(&c, vec![]), none);
    assert_eq!(plan(&c, vec![dm("1", 0, 20)]), none);
    // the newest block is left alone, and 0-40 does not yet fill 60
    assert_eq!(
        plan(&c, vec![dm("1", 0, 20), dm("2", 20, 40), dm("3", 40, 60)]),
        none
    );
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 20),
                dm("2", 20, 40),
                dm("3", 40, 60),
                dm("4", 60, 80)
            ]
        ),
        ["1", "2", "3"]
    );
    // a window before the newest block is compacted even with gaps
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 20),
                dm("2", 40, 60),
                dm("3", 60, 80),
                dm("4", 120, 140)
            ]
        ),
        ["1", "2"]
    );
    // next level: three 60s make a 180
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 60),
                dm("2", 60, 120),
                dm("3", 120, 180),
                dm("4", 180, 200)
            ]
        ),
        ["1", "2", "3"]
    );
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 60),
                dm("2", 60, 120),
                dm("3", 120, 180),
                dm("4", 180, 200),
                dm("5", 200, 220)
            ]
        ),
        ["1", "2", "3"]
    );
    // a block larger than a window is skipped at that level
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 180),
                dm("2", 180, 200),
                dm("3", 200, 220),
                dm("4", 220, 240),
                dm("5", 240, 260),
            ]
        ),
        ["2", "3", "4"]
    );
    // overlapping blocks come first, in min-time order, whatever the input order
    assert_eq!(
        plan(&c, vec![dm("3", 30, 50), dm("1", 0, 20), dm("2", 10, 30)]),
        ["1", "2"]
    );
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 20),
                dm("2", 19, 40),
                dm("4", 40, 60),
                dm("3", 35, 50),
                dm("5", 80, 100)
            ]
        ),
        ["1", "2", "3", "4"]
    );
    assert_eq!(
        plan(
            &c,
            vec![
                dm("1", 0, 20),
                dm("2", 20, 40),
                dm("3", 60, 80),
                dm("4", 70, 100)
            ]
        ),
        ["3", "4"]
    );
    // failed compactions are not retried within the same window
    let mut failed = dm("2", 20, 40);
    failed.meta.compaction.failed = true;
    assert_eq!(
        plan(
            &c,
            vec![dm("1", 0, 20), failed, dm("3", 40, 60), dm("4", 60, 80)]
        ),
        none
    );
    // a big block with many tombstones is rewritten
    let mut tomb = dm("1", 0, 540);
    tomb.meta.stats.num_tombstones = 5;
    assert_eq!(plan(&c, vec![tomb, dm("2", 540, 560)]), ["1"]);
    let mut few = dm("1", 0, 540);
    few.meta.stats.num_tombstones = 0;
    assert_eq!(plan(&c, vec![few, dm("2", 540, 560)]), none);
    // a small block entirely deleted is rewritten too
    let mut gone = dm("1", 0, 20);
    gone.meta.stats.num_tombstones = 10;
    assert_eq!(plan(&c, vec![gone, dm("2", 20, 40)]), ["1"]);
}

#[test]
fn plan_dir_reads_block_metas_and_ignores_temporary_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let h = 3_600_000;
    let mut dirs = Vec::new();
    for i in 0..4 {
        let s: Vec<(i64, f64)> = vec![(i * 2 * h, 1.0)];
        dirs.push(block_of(
            tmp.path(),
            &[("x", s)],
            i * 2 * h,
            (i + 1) * 2 * h,
        ));
    }
    std::fs::create_dir_all(
        tmp.path()
            .join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation"),
    )
    .unwrap();
    let c = Compactor::with_max_block_duration(54 * h);
    let mut p = c.plan_dir(tmp.path()).unwrap();
    p.sort();
    let mut want: Vec<PathBuf> = dirs[..3].to_vec();
    want.sort();
    assert_eq!(p, want);
    let u = c.compact_dirs(tmp.path(), &p).unwrap().unwrap();
    let m = Block::open(tmp.path().join(u.to_string())).unwrap();
    assert_eq!((m.min_time(), m.max_time()), (0, 6 * h));
    assert_eq!(m.meta().stats.num_samples, 3);
}

/// The planning cases of Prometheus's own planner test (ranges 20, 60, 180, 540, 1620).
#[test]
fn planner_matches_prometheus_reference_cases() {
    let c = Compactor::new(vec![20, 60, 180, 540, 1620]);
    let st = |name: &str, mint, maxt, series, tombs| {
        let mut d = dm(name, mint, maxt);
        d.meta.stats.num_series = series;
        d.meta.stats.num_tombstones = tombs;
        d
    };
    type Case = (Vec<DirMeta>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (vec![dm("1", 0, 20)], vec![]),
        (vec![dm("1", 0, 20), dm("2", 20, 40)], vec![]),
        (
            vec![dm("1", 0, 20), dm("2", 20, 40), dm("3", 40, 60)],
            vec![],
        ),
        (
            vec![
                dm("1", 0, 20),
                dm("2", 20, 40),
                dm("3", 40, 60),
                dm("4", 60, 80),
            ],
            vec!["1", "2", "3"],
        ),
        (
            vec![dm("1", 0, 20), dm("2", 20, 40), dm("3", 60, 80)],
            vec![],
        ),
        (
            vec![
                dm("1", 0, 20),
                dm("2", 20, 40),
                dm("3", 60, 80),
                dm("4", 80, 100),
            ],
            vec!["1", "2"],
        ),
        (
            vec![
                dm("1", 0, 20),
                dm("2", 20, 40),
                dm("3", 40, 60),
                dm("4", 60, 120),
                dm("5", 120, 180),
            ],
            vec!["1", "2", "3"],
        ),
        (
            vec![
                dm("2", 20, 40),
                dm("4", 60, 120),
                dm("5", 960, 980),
                dm("6", 120, 180),
                dm("7", 720, 960),
            ],
            vec!["2", "4", "6"],
        ),
        (vec![st("1", 0, 540, 10, 3)], vec![]),
        (vec![st("1", 0, 540, 10, 3), dm("2", 540, 560)], vec!["1"]),
        (vec![st("1", 0, 60, 10, 3), dm("2", 60, 80)], vec![]),
        (vec![st("1", 0, 540, 0, 0), dm("2", 540, 560)], vec![]),
        (
            vec![
                dm("5", 0, 360),
                dm("6", 540, 560),
                dm("7", 360, 420),
                dm("8", 420, 540),
            ],
            vec!["7", "8"],
        ),
        (
            vec![dm("1", 0, 20), dm("2", 19, 40), dm("3", 40, 60)],
            vec!["1", "2"],
        ),
        (
            vec![dm("1", 0, 20), dm("2", 20, 40), dm("3", 30, 50)],
            vec!["2", "3"],
        ),
        (
            vec![dm("1", 0, 20), dm("2", 10, 40), dm("3", 30, 50)],
            vec!["1", "2", "3"],
        ),
        (
            vec![
                dm("5", 0, 360),
                dm("6", 340, 560),
                dm("7", 360, 420),
                dm("8", 420, 540),
            ],
            vec!["5", "6", "7", "8"],
        ),
        (
            vec![
                dm("1", 0, 10),
                dm("2", 9, 20),
                dm("3", 30, 40),
                dm("4", 39, 50),
            ],
            vec!["1", "2"],
        ),
    ];
    for (i, (metas, want)) in cases.into_iter().enumerate() {
        assert_eq!(plan(&c, metas), want, "case {i}");
    }
}
