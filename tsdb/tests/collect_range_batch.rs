//! `collect_range` of block series and of head chunks (whole chunks inside the range are
//! decoded in one batch by `decode_chunks_into`, chunks at the edges are cut while decoding)
//! against the plain `seek`/`next` walk: windows that start and end inside chunks, on chunk
//! edges, between samples and outside the data, chunks of 1 to 120 samples, with and without
//! tombstones, and a corrupt chunk in the middle of a batch.

use tsdb::block::Block;
use tsdb::compact::{chunks_split, write_block};
use tsdb::head::querier::ChunksIter;
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::{collect_range_stepwise, ChunkMeta, ChunkSeries, Queryable, SampleIter};

const T0: i64 = 1_000_000;
const N: usize = 1000;

/// `N` samples about 15 s apart (with jitter), counter-like and gauge-like values mixed.
fn samples(seed: u64) -> Vec<(i64, f64)> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut t, mut v) = (T0, 0.0f64);
    (0..N)
        .map(|i| {
            if i > 0 {
                t += 15_000 + (rnd() % 41) as i64 - 20;
            }
            v = match rnd() % 4 {
                0 => v,
                1 => v + (rnd() % 100) as f64,
                2 => (rnd() % 10_000) as f64 / 100.0,
                _ => v * 1.25,
            };
            (t, v)
        })
        .collect()
}

fn bits(s: &[(i64, f64)]) -> Vec<(i64, u64)> {
    s.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

/// Window ends: before the data, at and between samples around chunk edges, after it.
fn window_points(ts: &[(i64, f64)]) -> Vec<i64> {
    let mut points = vec![i64::MIN, T0 - 1];
    for i in [0usize, 1, 6, 7, 119, 120, 121, 240, 500, 998, 999] {
        points.extend([ts[i].0 - 1, ts[i].0, ts[i].0 + 1]);
    }
    points.push(i64::MAX);
    points
}

#[test]
fn head_chunks_collect_range_matches_stepwise_walk() {
    let (mut checked, mut errors) = (0, 0);
    for (k, per_chunk) in [1usize, 7, 120].into_iter().enumerate() {
        let data = samples(10 + k as u64);
        let mut chunks: Vec<ChunkMeta> = chunks_split(&data, per_chunk);
        let points = window_points(&data);
        for corrupt in [false, true] {
            if corrupt {
                // Cut the middle chunk short: reading stops at its bad sample, with an error.
                let mid = chunks.len() / 2;
                let d = &chunks[mid].data;
                chunks[mid].data = d[..d.len() - 2].into();
            }
            for &lo in &points {
                for &hi in points.iter().filter(|&&h| h >= lo) {
                    for (qmin, qmax, cmin, cmax) in
                        [(lo, hi, i64::MIN, i64::MAX), (T0, i64::MAX, lo, hi)]
                    {
                        let mut got = vec![(1, 1.0)];
                        let mut it = ChunksIter::new(&chunks, qmin, qmax);
                        it.collect_range(cmin, cmax, &mut got);
                        let mut want = vec![(1, 1.0)];
                        let mut walk = ChunksIter::new(&chunks, qmin, qmax);
                        collect_range_stepwise(&mut walk, cmin, cmax, &mut want);
                        let ctx = format!("{per_chunk}/chunk corrupt {corrupt} query [{qmin}, {qmax}] collect [{cmin}, {cmax}]");
                        assert_eq!(bits(&got), bits(&want), "{ctx}");
                        // The walk also opens the chunk after the range to see that it is
                        // past it; `collect_range` reads only chunks overlapping the range.
                        let (elo, ehi) = (qmin.max(cmin), qmax.min(cmax));
                        let reads_bad = corrupt && {
                            let c = &chunks[chunks.len() / 2];
                            c.max_time >= elo && c.min_time <= ehi
                        };
                        errors += usize::from(reads_bad && it.err().is_some());
                        if reads_bad || !corrupt {
                            assert_eq!(
                                it.err().map(|e| e.to_string()),
                                walk.err().map(|e| e.to_string()),
                                "{ctx}"
                            );
                        } else {
                            assert!(it.err().is_none(), "{ctx}");
                        }
                        checked += got.len();
                    }
                }
            }
        }
    }
    assert!(checked > 500_000, "only {checked} samples compared");
    assert!(errors > 100, "only {errors} reads met the corrupt chunk");
}

#[test]
fn block_collect_range_matches_stepwise_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let per_chunk = [120usize, 1, 7, 50, 119];
    let data: Vec<Vec<(i64, f64)>> = (0..per_chunk.len() as u64).map(samples).collect();
    let series = data
        .iter()
        .zip(per_chunk)
        .enumerate()
        .map(|(k, (s, n))| ChunkSeries {
            labels: Labels::from_pairs(&[("__name__", "m"), ("i", &k.to_string())]),
            chunks: chunks_split(s, n),
        });
    let maxt = data.iter().map(|s| s[N - 1].0).max().unwrap() + 1;
    let ulid = write_block(tmp.path(), series, T0, maxt, 1, &[]).unwrap();
    let plain = Block::open(tmp.path().join(ulid.to_string())).unwrap();
    // Tombstones on series 0, 2 and 4: one inside a chunk, one across chunk edges.
    let some = Matcher::new(MatchType::Regexp, "i", "0|2|4").unwrap();
    let deleted = plain
        .delete(
            T0 + 10 * 15_000,
            T0 + 12 * 15_000,
            std::slice::from_ref(&some),
        )
        .unwrap()
        .delete(T0 + 230 * 15_000, T0 + 370 * 15_000, &[some])
        .unwrap();

    let points = window_points(&data[0]);
    let all = Matcher::new(MatchType::Regexp, "i", ".+").unwrap();
    let mut checked = 0;
    for block in [&plain, &deleted] {
        for &lo in &points {
            for &hi in points.iter().filter(|&&h| h >= lo) {
                // The range given both to the querier and to `collect_range`.
                for (qmin, qmax, cmin, cmax) in [(lo, hi, i64::MIN, i64::MAX), (T0, maxt, lo, hi)] {
                    let q = block.querier(qmin, qmax).unwrap();
                    for s in q.select(true, None, std::slice::from_ref(&all)) {
                        let s = s.unwrap();
                        let mut got = vec![(1, 1.0)];
                        let mut it = s.iter();
                        it.collect_range(cmin, cmax, &mut got);
                        assert!(it.err().is_none());
                        let mut want = vec![(1, 1.0)];
                        collect_range_stepwise(&mut *s.iter(), cmin, cmax, &mut want);
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{} query [{qmin}, {qmax}] collect [{cmin}, {cmax}]",
                            s.labels()
                        );
                        checked += got.len();
                    }
                }
            }
        }
    }
    assert!(checked > 1_000_000, "only {checked} samples compared");
}
