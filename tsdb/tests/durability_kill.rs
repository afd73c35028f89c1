//! Durability under SIGKILL: a child process (this test binary re-executed with
//! `IGNIS_DURABILITY_DIR` set) appends committed batches and prints `ACK <id>` after each
//! commit; the parent kills it at a random moment, reopens the database and checks that every
//! acknowledged batch is wholly there and no batch is partly there. 24 rounds; the child also
//! compacts (block cut, WAL checkpoint and truncation) every 1500 batches.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tsdb::chunkenc::ValueType;
use tsdb::db::{Db, Options};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::Queryable;

const SERIES: usize = 40;
const ENV_DIR: &str = "IGNIS_DURABILITY_DIR";
const ENV_START: &str = "IGNIS_DURABILITY_START";

fn opts() -> Options {
    Options {
        retention: Duration::ZERO,
        wal_segment_size: 128 * 1024,
        ..Options::default()
    }
}

fn labels() -> Vec<Labels> {
    (0..SERIES)
        .map(|i| Labels::from_pairs(&[("__name__", "dur"), ("s", &i.to_string())]))
        .collect()
}

/// The child role: does nothing unless started by the parent with the env vars set.
#[test]
fn durability_child_entry() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let start: i64 = std::env::var(ENV_START)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let db = Db::open(&dir, opts()).expect("child open");
    let ls = labels();
    let mut refs = vec![None; SERIES];
    let out = std::io::stdout();
    for id in start.. {
        let mut app = db.appender();
        for (i, l) in ls.iter().enumerate() {
            // every sample of batch `id` has timestamp id*1000 and value id
            refs[i] = Some(
                app.append(refs[i], l, id * 1000, id as f64)
                    .expect("append"),
            );
        }
        app.commit().expect("commit");
        // batches are 1 s apart: cut blocks, checkpoint and truncate the WAL as we go, so
        // kills also land inside compactions
        if id % 1500 == 0 {
            db.compact().expect("compact");
        }
        let mut o = out.lock();
        writeln!(o, "ACK {id}").ok();
        o.flush().ok();
    }
}

/// Batch id → number of samples present (from timestamps), checking values match ids.
fn batches_in(dir: &Path) -> BTreeMap<i64, usize> {
    let db = Db::open(dir, opts()).expect("reopen");
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    let mut out = BTreeMap::new();
    for s in q.select(
        false,
        None,
        &[Matcher::new(MatchType::Equal, "__name__", "dur").unwrap()],
    ) {
        let s = s.unwrap();
        let mut it = s.iter();
        while it.next() == ValueType::Float {
            let (t, v) = it.at();
            assert_eq!(t % 1000, 0);
            assert_eq!(v, (t / 1000) as f64, "value does not match batch id");
            *out.entry(t / 1000).or_insert(0) += 1;
        }
        assert!(it.err().is_none());
    }
    out
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261126);
    let mut next_start = 1i64;
    let mut total_acked = 0usize;
    for round in 0..24 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "durability_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, tmp.path())
            .env(ENV_START, next_start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print its "test … " prefix on the same line as the first ack
                let ack = line.find("ACK ").map(|i| &line[i + 4..]);
                if let Some(id) = ack.and_then(|s| s.trim().parse::<i64>().ok()) {
                    if tx.send(id).is_err() {
                        break;
                    }
                }
            }
        });
        // wait for the first ack (the child has opened and replayed), then a random time
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child acknowledged nothing");
        let mut acked = vec![first];
        let wait = Duration::from_millis(rng.gen_range(0..150));
        let until = Instant::now() + wait;
        while let Ok(id) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            acked.push(id);
            if Instant::now() >= until {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // acks printed before the kill are acknowledged too
        while let Ok(id) = rx.recv_timeout(Duration::from_millis(200)) {
            acked.push(id);
        }
        reader.join().unwrap();

        let present = batches_in(tmp.path());
        for id in &acked {
            assert_eq!(
                present.get(id).copied(),
                Some(SERIES),
                "round {round}: acknowledged batch {id} incomplete"
            );
        }
        for (id, n) in &present {
            assert_eq!(*n, SERIES, "round {round}: batch {id} is partly there");
        }
        let max_present = present.keys().next_back().copied().unwrap_or(0);
        let max_acked = acked.iter().copied().max().unwrap_or(0);
        assert!(max_present >= max_acked);
        eprintln!(
            "round {round}: {} batches acknowledged (ids {}..={}), {} present after reopen",
            acked.len(),
            acked.iter().min().unwrap_or(&0),
            max_acked,
            present.len()
        );
        total_acked += acked.len();
        next_start = max_present.max(max_acked) + 1;
    }
    assert!(total_acked >= 24);
    // all batches from 1 to the last are there exactly once (nothing lost between rounds)
    let present = batches_in(tmp.path());
    assert_eq!(present.len() as i64, *present.keys().next_back().unwrap());
}
