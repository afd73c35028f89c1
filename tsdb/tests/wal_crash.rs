//! Crash safety with a real SIGKILL: a child process (this test binary re-run in "child"
//! mode) logs and syncs records and reports each synced count on stdout; the parent kills it
//! mid-write. Every record the child reported as logged must be readable afterwards (after a
//! repair of the torn tail, if there is one), and a new writer continues cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use tsdb::wal::{repair, Reader};
use tsdb::Error;

const CHILD_ENV: &str = "IGNIS_WAL_CRASH_CHILD_DIR";

fn record(i: u64) -> Vec<u8> {
    // Mixed sizes so that records cross pages and segments.
    let len = (i * 7919 % 5000) as usize + 8;
    let mut v = i.to_be_bytes().to_vec();
    v.extend((0..len).map(|j| (j as u64 ^ i) as u8));
    v
}

/// The child: runs only when the parent sets CHILD_ENV; logs records forever.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut w = common::open_wal(&dir, 4, true);
    let mut i = 0u64;
    loop {
        let recs: Vec<Vec<u8>> = (i..i + 3).map(record).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        w.log(&refs).unwrap();
        i += 3;
        if i.is_multiple_of(30) {
            w.sync().unwrap();
        }
        // Reported after `log` returned: these records are in the OS.
        println!("logged {i}");
    }
}

fn read_all(dir: &Path) -> (Vec<Vec<u8>>, Option<tsdb::wal::CorruptionError>) {
    let mut r = Reader::open(dir).unwrap();
    let mut out = Vec::new();
    loop {
        match r.next() {
            Ok(Some((_, _, rec))) => out.push(rec.to_vec()),
            Ok(None) => return (out, None),
            Err(Error::WalCorruption(c)) => return (out, Some(c)),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn sigkill_during_writes_loses_nothing_logged() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let target = 300 + round * 450;
        let mut logged = 0u64;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("logged ") {
                logged = n.trim().parse().unwrap();
                if logged >= target {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines printed between our last read and the kill only raise the bound.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("logged ") {
                logged = logged.max(n.trim().parse().unwrap());
            }
        }
        assert!(logged >= target, "child stopped early at {logged}");

        let (got, err) = read_all(dir.path());
        assert!(
            got.len() as u64 >= logged,
            "lost records: read {} of {logged}",
            got.len()
        );
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r, &record(i as u64), "record {i}");
        }
        if let Some(e) = err {
            repair(dir.path(), &e).unwrap();
        }
        let mut w = common::open_wal(dir.path(), 4, true);
        w.log(&[b"after crash"]).unwrap();
        w.close().unwrap();
        let (again, err) = read_all(dir.path());
        assert!(err.is_none());
        assert_eq!(&again[..got.len()], &got[..]);
        assert_eq!(again.last().unwrap(), b"after crash");
    }
}
