//! Reading the blocks Prometheus 2.42 wrote (`shared/fixtures/prometheus-2.42/blocks`).

mod common;

use std::collections::BTreeMap;

use common::*;
use tsdb::block::Block;
use tsdb::chunkenc::{ValueType, XorAppender};
use tsdb::chunks::ChunkWriter;
use tsdb::index::{ChunkRefMeta, IndexWriter};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::Queryable;

#[test]
fn fixture_blocks_hold_exactly_the_openmetrics_samples() {
    let want = openmetrics_samples();
    assert_eq!(want.len(), 269);
    assert_eq!(want.values().map(Vec::len).sum::<usize>(), 515_480);

    let mut got: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    let dirs = fixture_block_dirs();
    assert_eq!(dirs.len(), 4);
    for dir in dirs {
        let b = Block::open(&dir).unwrap();
        let meta = b.meta().clone();
        let q = b.querier(meta.min_time, meta.max_time - 1).unwrap();
        let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
        let (mut n_series, mut n_samples) = (0u64, 0u64);
        let mut prev: Option<Labels> = None;
        for s in q.select(true, None, &m) {
            let s = s.unwrap();
            if let Some(p) = &prev {
                assert!(p < s.labels(), "series not sorted");
            }
            prev = Some(s.labels().clone());
            n_series += 1;
            let out = got.entry(s.labels().clone()).or_default();
            let mut it = s.iter();
            while it.next() == ValueType::Float {
                let (t, v) = it.at();
                assert!(t >= meta.min_time && t < meta.max_time);
                out.push((t, v.to_bits()));
                n_samples += 1;
            }
            assert!(it.err().is_none());
        }
        assert_eq!(n_series, meta.stats.num_series, "{}", dir.display());
        assert_eq!(n_samples, meta.stats.num_samples, "{}", dir.display());
        let mut n_chunks = 0;
        for r in tsdb::index::postings::collect(b.index().all_postings().unwrap()) {
            n_chunks += b.index().series_labels(r).unwrap().1.len() as u64;
        }
        assert_eq!(n_chunks, meta.stats.num_chunks);
    }
    assert_eq!(got.len(), want.len());
    for (ls, w) in &want {
        let g = got.get(ls).unwrap_or_else(|| panic!("missing series {ls}"));
        assert_eq!(g.len(), w.len(), "{ls}");
        assert!(g == w, "samples differ for {ls}");
    }
}

#[test]
fn reencoding_fixture_chunks_gives_identical_bytes() {
    for dir in fixture_block_dirs() {
        let b = Block::open(&dir).unwrap();
        let mut n = 0;
        for r in tsdb::index::postings::collect(b.index().all_postings().unwrap()) {
            let (_, chks) = b.index().series_labels(r).unwrap();
            for c in chks {
                let samples = b.chunk_samples(&c).unwrap();
                assert_eq!(samples.first().unwrap().0, c.min_time);
                assert_eq!(samples.last().unwrap().0, c.max_time);
                let mut app = XorAppender::new();
                for (t, v) in samples {
                    app.append(t, v);
                }
                let (_, stored) = b.chunks().chunk(c.chunk_ref).unwrap();
                assert_eq!(
                    app.bytes(),
                    stored,
                    "chunk {:#x} of {}",
                    c.chunk_ref,
                    dir.display()
                );
                n += 1;
            }
        }
        assert_eq!(n as u64, b.meta().stats.num_chunks);
    }
}

/// Rewriting every fixture block's chunks and index with our writers reproduces the files
/// byte for byte.
#[test]
fn rewriting_fixture_index_and_chunks_is_byte_identical() {
    for dir in fixture_block_dirs() {
        let b = Block::open(&dir).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut cw = ChunkWriter::new(tmp.path().join("chunks")).unwrap();
        let mut series: Vec<(Labels, Vec<ChunkRefMeta>)> = Vec::new();
        // Prometheus always has the empty string among its symbols (from the all-postings key).
        let mut symbols = std::collections::BTreeSet::from([String::new()]);
        for r in tsdb::index::postings::collect(b.index().all_postings().unwrap()) {
            let (ls, chks) = b.index().series_labels(r).unwrap();
            let mut out = Vec::new();
            for c in chks {
                let (enc, data) = b.chunks().chunk(c.chunk_ref).unwrap();
                let nr = cw.write_chunk(enc, data).unwrap();
                assert_eq!(nr, c.chunk_ref);
                out.push(ChunkRefMeta { chunk_ref: nr, ..c });
            }
            for l in ls.iter() {
                symbols.insert(l.name.clone());
                symbols.insert(l.value.clone());
            }
            series.push((ls, out));
        }
        cw.close().unwrap();
        let ipath = tmp.path().join("index");
        let mut iw = IndexWriter::create(&ipath).unwrap();
        for s in &symbols {
            iw.add_symbol(s).unwrap();
        }
        for (ls, c) in &series {
            iw.add_series(ls, c).unwrap();
        }
        iw.close().unwrap();
        let orig = std::fs::read(dir.join("index")).unwrap();
        let ours = std::fs::read(&ipath).unwrap();
        assert_eq!(orig.len(), ours.len(), "index size of {}", dir.display());
        assert!(orig == ours, "index bytes differ for {}", dir.display());
        let orig = std::fs::read(dir.join("chunks/000001")).unwrap();
        let ours = std::fs::read(tmp.path().join("chunks/000001")).unwrap();
        assert!(orig == ours, "chunk bytes differ for {}", dir.display());
    }
}
