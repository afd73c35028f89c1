//! Index written then read back, postings and matcher semantics against a naive reference,
//! and corrupted files giving errors that name the file (never panics).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::{Rng, SeedableRng};
use tsdb::block::Block;
use tsdb::chunkenc::ValueType;
use tsdb::compact::{chunk_series_from_samples, write_block};
use tsdb::index::{postings, ChunkRefMeta, IndexReader, IndexWriter};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::{matches_all, Queryable};
use tsdb::Error;

fn random_series(n: usize, seed: u64) -> Vec<Labels> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut set = BTreeSet::new();
    while set.len() < n {
        let mut pairs = vec![("__name__".to_string(), format!("m{}", rng.gen_range(0..4)))];
        for name in ["a", "b", "job", "zone"] {
            if rng.gen_bool(0.7) {
                let v = match rng.gen_range(0..5) {
                    0 => "x".to_string(),
                    1 => "y".to_string(),
                    2 => format!("pre{}", rng.gen_range(0..3)),
                    3 => "日本".to_string(),
                    _ => format!("v{}", rng.gen_range(0..6)),
                };
                pairs.push((name.to_string(), v));
            }
        }
        set.insert(Labels::from_pairs(&pairs));
    }
    set.into_iter().collect()
}

#[test]
fn index_round_trip_postings_values_series() {
    let series = random_series(300, 7);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("index");
    let mut symbols = BTreeSet::from([String::new()]);
    for ls in &series {
        for l in ls.iter() {
            symbols.insert(l.name.clone());
            symbols.insert(l.value.clone());
        }
    }
    let mut w = IndexWriter::create(&path).unwrap();
    for s in &symbols {
        w.add_symbol(s).unwrap();
    }
    assert!(w.add_symbol("a").is_err(), "out of order symbol accepted");
    let mut refs = Vec::new();
    for (i, ls) in series.iter().enumerate() {
        let chunks: Vec<ChunkRefMeta> = (0..i % 4)
            .map(|k| ChunkRefMeta {
                min_time: k as i64 * 1000 - 500,
                max_time: k as i64 * 1000 + 400,
                chunk_ref: (k as u64) << 32 | (8 + i as u64 * 10),
            })
            .collect();
        refs.push((w.add_series(ls, &chunks).unwrap(), chunks));
    }
    assert!(
        w.add_series(&series[0], &[]).is_err(),
        "out of order series accepted"
    );
    w.close().unwrap();

    let r = IndexReader::open(&path).unwrap();
    r.check_label_indices().unwrap();
    let got_syms: Vec<String> = r.symbols().map(|s| s.unwrap().to_string()).collect();
    assert_eq!(got_syms, symbols.iter().cloned().collect::<Vec<_>>());

    // label names and values
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut post: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for (ls, (sref, _)) in series.iter().zip(&refs) {
        for l in ls.iter() {
            values
                .entry(l.name.clone())
                .or_default()
                .insert(l.value.clone());
            post.entry((l.name.clone(), l.value.clone()))
                .or_default()
                .push(*sref);
        }
    }
    assert_eq!(
        r.label_names(),
        values.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for (n, vs) in &values {
        assert_eq!(
            r.label_values(n),
            vs.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    for ((n, v), want) in &post {
        assert_eq!(
            &postings::collect(r.postings(n, v).unwrap()),
            want,
            "{n}={v}"
        );
    }
    assert_eq!(
        postings::collect(r.postings("a", "nope").unwrap()),
        Vec::<u64>::new()
    );
    let all: Vec<u64> = refs.iter().map(|(r, _)| *r).collect();
    assert_eq!(postings::collect(r.all_postings().unwrap()), all);
    for (ls, (sref, chunks)) in series.iter().zip(&refs) {
        let (gl, gc) = r.series_labels(*sref).unwrap();
        assert_eq!(&gl, ls);
        assert_eq!(&gc, chunks);
    }
    assert!(r.series_labels(1).is_err());
}

/// Writes a block with `series` (one sample per 15s for 10 minutes each).
fn small_block(parent: &Path, series: &[Labels]) -> std::path::PathBuf {
    let cs = series.iter().enumerate().map(|(i, ls)| {
        let samples: Vec<(i64, f64)> = (0..40)
            .map(|k| (k * 15_000, (i * 100 + k as usize) as f64))
            .collect();
        chunk_series_from_samples(ls.clone(), &samples)
    });
    let ulid = write_block(parent, cs, 0, 600_000, 1, &[]).unwrap();
    parent.join(ulid.to_string())
}

#[test]
fn matchers_select_what_a_naive_filter_selects() {
    let series = random_series(200, 11);
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_block(tmp.path(), &series);
    let b = Block::open(&dir).unwrap();
    let q = b.querier(i64::MIN, i64::MAX).unwrap();
    let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
    use MatchType::*;
    let cases: Vec<Vec<Matcher>> = vec![
        vec![m(Equal, "a", "x")],
        vec![m(Equal, "__name__", "m1"), m(Equal, "b", "")],
        vec![m(Equal, "__name__", "m1"), m(NotEqual, "b", "")],
        vec![m(Equal, "__name__", "m2"), m(NotEqual, "a", "x")],
        vec![m(Regexp, "a", "x|y")],
        vec![m(Regexp, "a", "pre.*")],
        vec![m(Regexp, "a", "pre.*"), m(NotRegexp, "b", "x|v1")],
        vec![m(Regexp, "a", ".*"), m(Equal, "job", "y")],
        vec![m(Regexp, "a", ".+"), m(NotRegexp, "a", "v.")],
        vec![m(Regexp, "zone", "日.*|x")],
        vec![m(NotEqual, "a", "x"), m(Regexp, "__name__", "m[01]")],
        vec![m(Regexp, "a", "")],
        vec![m(Regexp, "nolabel", ".+")],
        vec![m(NotEqual, "nolabel", "z"), m(Equal, "__name__", "m3")],
    ];
    for ms in cases {
        let want: Vec<Labels> = series
            .iter()
            .filter(|l| matches_all(l, &ms))
            .cloned()
            .collect();
        let got: Vec<Labels> = q
            .select(true, None, &ms)
            .map(|s| s.unwrap().labels().clone())
            .collect();
        assert_eq!(got, want, "{ms:?}");
        let mut names: Vec<String> = want
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(q.label_names(&ms, 0).unwrap(), names);
        let mut vals: Vec<String> = want
            .iter()
            .filter_map(|l| l.get("a").map(str::to_string))
            .collect();
        vals.sort();
        vals.dedup();
        assert_eq!(q.label_values("a", &ms, 0).unwrap(), vals);
    }
}

#[test]
fn querier_trims_to_range_and_applies_tombstones() {
    let series = random_series(3, 5);
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_block(tmp.path(), &series);
    // delete [60s, 120s] of the first series (ref of first series = first posting)
    let r0 = {
        let b = Block::open(&dir).unwrap();
        postings::collect(b.index().all_postings().unwrap())[0]
    };
    let mut t = tsdb::tombstones::Tombstones::new();
    t.insert(
        r0,
        [tsdb::tombstones::Interval::new(60_000, 120_000)]
            .into_iter()
            .collect(),
    );
    tsdb::tombstones::write_tombstones(&dir, &t).unwrap();
    let b = Block::open(&dir).unwrap();
    let q = b.querier(30_000, 300_000).unwrap();
    let all = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    let got: Vec<_> = q.select(true, None, &all).map(|s| s.unwrap()).collect();
    assert_eq!(got.len(), 3);
    let ts = |s: &std::sync::Arc<dyn tsdb::Series>| {
        let mut it = s.iter();
        let mut v = Vec::new();
        while it.next() == ValueType::Float {
            v.push(it.at().0);
        }
        v
    };
    let first = ts(&got[0]);
    assert_eq!(first.first(), Some(&30_000));
    assert_eq!(first.last(), Some(&300_000));
    assert!(first.iter().all(|t| !(60_000..=120_000).contains(t)));
    assert_eq!(first.len(), 19 - 5);
    assert_eq!(ts(&got[1]).len(), 19);
    // seek
    let mut it = got[1].iter();
    assert_eq!(it.seek(100_000), ValueType::Float);
    assert_eq!(it.at().0, 105_000);
    assert_eq!(it.seek(50_000), ValueType::Float);
    assert_eq!(it.at().0, 105_000);
    assert_eq!(it.seek(400_000), ValueType::None);
    // chunk querier re-encodes trimmed chunks
    let cq = b.chunk_querier(30_000, 300_000).unwrap();
    let cs: Vec<_> = cq
        .select_chunks(true, None, &all)
        .map(|s| s.unwrap())
        .collect();
    let n: usize = cs[0]
        .chunks
        .iter()
        .map(|c| tsdb::compact::decode_chunk(c).unwrap().len())
        .sum();
    assert_eq!(n, 14);
    assert_eq!(cs[0].chunks[0].min_time, 30_000);
}

/// Marks the bytes of an index that belong to some checked structure (everything but padding).
fn covered_bytes(r: &IndexReader, b: &[u8]) -> Vec<bool> {
    use tsdb::encoding::Decbuf;
    let mut cov = vec![false; b.len()];
    let mut mark = |from: usize, to: usize| cov[from..to].iter_mut().for_each(|x| *x = true);
    let table_end =
        |off: usize| off + 4 + u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize + 4;
    let toc = r.toc();
    mark(0, 5);
    mark(b.len() - 52, b.len());
    for off in [toc.symbols, toc.label_indices_table, toc.postings_table] {
        mark(off as usize, table_end(off as usize));
    }
    for (table, keys) in [(toc.label_indices_table, 1), (toc.postings_table, 2)] {
        let t = table as usize;
        let mut d = Decbuf::new(&b[t + 8..table_end(t) - 4]);
        while !d.is_empty() {
            assert_eq!(d.uvarint().unwrap(), keys);
            for _ in 0..keys {
                d.uvarint_str().unwrap();
            }
            let off = d.uvarint().unwrap() as usize;
            mark(off, table_end(off));
        }
    }
    for sref in postings::collect(r.all_postings().unwrap()) {
        let off = sref as usize * 16;
        let (len, n) = tsdb::encoding::uvarint(&b[off..]).unwrap();
        mark(off, off + n + len as usize + 4);
    }
    cov
}

fn read_everything(dir: &Path) -> Result<usize, Error> {
    let b = Block::open(dir)?;
    b.index().check_label_indices()?;
    postings::collect(b.index().all_postings()?);
    for name in b.index().label_names() {
        for v in b.index().label_values(name) {
            postings::collect(b.index().postings(name, v)?);
        }
    }
    let q = b.querier(i64::MIN, i64::MAX)?;
    let all = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    let mut n = 0;
    for s in q.select(true, None, &all) {
        let s = s?;
        let mut it = s.iter();
        while it.next() == ValueType::Float {
            n += 1;
        }
        if let Some(e) = it.err() {
            return Err(e);
        }
    }
    for name in q.label_names(&[], 0)? {
        q.label_values(&name, &[], 0)?;
    }
    Ok(n)
}

fn assert_names(e: &Error, file: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&file.display().to_string()),
        "error {msg:?} does not name {}",
        file.display()
    );
}

#[test]
fn corrupt_index_gives_errors_naming_it_never_panics() {
    let series = random_series(12, 3);
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_block(tmp.path(), &series);
    let ipath = dir.join("index");
    let good = std::fs::read(&ipath).unwrap();
    assert_eq!(read_everything(&dir).unwrap(), 12 * 40);
    let r = IndexReader::open(&ipath).unwrap();
    let covered = covered_bytes(&r, &good);
    drop(r);

    // Every single-byte flip: no panic; flips in checked sections are reported.
    let mut detected = 0;
    for pos in 0..good.len() {
        let mut b = good.clone();
        b[pos] ^= 0x5a;
        std::fs::write(&ipath, &b).unwrap();
        match read_everything(&dir) {
            Ok(_) => {
                // Only padding between sections and entries may change unnoticed.
                assert!(
                    !covered[pos] && good[pos] == 0,
                    "flip at {pos} (byte {:#x}, covered {}) went unnoticed; toc {:?}",
                    good[pos],
                    covered[pos],
                    IndexReader::open(&ipath).map(|r| r.toc())
                );
            }
            Err(e) => {
                detected += 1;
                assert!(matches!(e, Error::Corruption { .. }), "flip at {pos}: {e}");
                assert_names(&e, &ipath);
            }
        }
    }
    assert!(detected > good.len() / 2);
    // Truncations.
    for len in [0, 3, 5, 40, good.len() / 2, good.len() - 1] {
        std::fs::write(&ipath, &good[..len]).unwrap();
        let e = read_everything(&dir).unwrap_err();
        assert!(
            matches!(e, Error::Corruption { .. }),
            "truncated to {len}: {e}"
        );
        assert_names(&e, &ipath);
    }
    std::fs::write(&ipath, &good).unwrap();
    assert_eq!(read_everything(&dir).unwrap(), 12 * 40);
}

#[test]
fn corrupt_chunks_meta_and_tombstones_name_their_file() {
    let series = random_series(5, 9);
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_block(tmp.path(), &series);
    let cpath = dir.join("chunks/000001");
    let good = std::fs::read(&cpath).unwrap();
    for pos in [0, 4, 9, 20, good.len() / 2, good.len() - 1] {
        let mut b = good.clone();
        b[pos] ^= 0xff;
        std::fs::write(&cpath, &b).unwrap();
        let e = read_everything(&dir).unwrap_err();
        assert!(
            matches!(e, Error::Corruption { .. }) || e.to_string().contains("000001"),
            "{e}"
        );
        assert!(e.to_string().contains("000001"), "{e}");
    }
    std::fs::write(&cpath, &good[..good.len() - 10]).unwrap();
    let e = read_everything(&dir).unwrap_err();
    assert!(e.to_string().contains("000001"), "{e}");
    std::fs::write(&cpath, &good).unwrap();

    let mpath = dir.join("meta.json");
    let meta = std::fs::read(&mpath).unwrap();
    std::fs::write(&mpath, &meta[..meta.len() / 2]).unwrap();
    let e = read_everything(&dir).unwrap_err();
    assert_names(&e, &mpath);
    std::fs::write(&mpath, &meta).unwrap();

    let tpath = dir.join("tombstones");
    std::fs::write(&tpath, [1u8, 2, 3]).unwrap();
    let e = read_everything(&dir).unwrap_err();
    assert_names(&e, &tpath);
}

#[test]
fn delete_writes_tombstones_and_compaction_drops_deleted_samples() {
    let series = random_series(6, 21);
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_block(tmp.path(), &series);
    let b = Block::open(&dir).unwrap();
    let m = [Matcher::new(
        MatchType::Equal,
        "__name__",
        series[0].get("__name__").unwrap(),
    )
    .unwrap()];
    let hit = series.iter().filter(|l| matches_all(l, &m)).count();
    let b = b.delete(0, 299_999, &m).unwrap();
    assert_eq!(b.meta().stats.num_tombstones, hit as u64);
    assert_eq!(read_everything(&dir).unwrap(), 6 * 40 - hit * 20);
    // Compacting the block alone rewrites it without the deleted samples.
    let out = tempfile::tempdir().unwrap();
    let c = tsdb::compact::Compactor::with_max_block_duration(i64::MAX);
    let u = c.compact(out.path(), &[b]).unwrap().unwrap();
    let nb = Block::open(out.path().join(u.to_string())).unwrap();
    assert!(nb.tombstones().is_empty());
    assert_eq!(nb.meta().stats.num_samples as usize, 6 * 40 - hit * 20);
}

#[test]
fn postings_offsets_far_outside_the_file_are_errors() {
    use tsdb::encoding::Encbuf;
    // A syntactically valid index whose only postings entry points at u64::MAX.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("index");
    let mut e = Encbuf::new();
    e.put_be32(0xBAAA_D700);
    e.put_byte(2);
    let sym = e.len() as u64;
    e.put_be32(4);
    e.put_be32(0);
    e.put_crc32c_of(sym as usize + 4);
    let pt = e.len() as u64;
    let mut body = Encbuf::new();
    body.put_be32(1);
    body.put_uvarint(2);
    body.put_uvarint_str("");
    body.put_uvarint_str("");
    body.put_uvarint(u64::MAX);
    e.put_be32(body.len() as u32);
    e.put_bytes(body.get());
    e.put_be32(tsdb::encoding::crc32c(body.get()));
    let toc = e.len();
    for off in [sym, pt, pt, pt, pt, pt] {
        e.put_be64(off);
    }
    e.put_crc32c_of(toc);
    std::fs::write(&path, e.get()).unwrap();
    let r = IndexReader::open(&path).unwrap();
    let err = r.all_postings().unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    assert!(r
        .postings_for_matchers(&[Matcher::new(MatchType::Regexp, "x", ".*").unwrap()])
        .is_err());
}
