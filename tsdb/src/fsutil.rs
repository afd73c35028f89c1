//! Small file-system helpers shared by the on-disk formats: directory fsync, listing the
//! numbered files of a directory (WAL segments, head chunk files) and atomic file
//! replacement (write `<name>.tmp`, fsync, rename, fsync the directory).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// fsyncs a directory so that created, renamed or deleted entries survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io(dir, e))?;
    f.sync_all().map_err(|e| Error::io(dir, e))
}

/// The numbers of the files in `dir` whose whole name is a decimal number fitting `u32`,
/// ascending; other entries are ignored.
pub(crate) fn numbered_files(dir: &Path) -> Result<Vec<u32>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(i) = name.parse::<u32>() {
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Replaces `dir/name` with `bytes` atomically: writes and fsyncs `dir/name.tmp`, renames it
/// over `dir/name` and fsyncs `dir`.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_files_lists_only_numbers_sorted() {
        let d = tempfile::tempdir().unwrap();
        for n in ["000010", "2", "00000001", "x1", "3.tmp", "99999999999"] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        assert_eq!(numbered_files(d.path()).unwrap(), vec![1, 2, 10]);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_tmp() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(d.path(), "f", b"one").unwrap();
        write_atomic(d.path(), "f", b"two").unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"two");
        assert!(!d.path().join("f.tmp").exists());
    }
}
