//! Writer of index format v2 (layout in the [module docs](super)).
//!
//! Memory: the writer keeps the encoded symbol table (each symbol once, with its offset) and,
//! per label pair, the list of series refs (4 bytes per series and label) until
//! [`IndexWriter::close`] writes the postings; nothing else per series. Label strings are
//! resolved to symbol numbers by binary search in the sorted symbol table, or given directly as
//! symbol numbers with [`IndexWriter::add_series_ids`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{ChunkRefMeta, Toc, FORMAT_V2, MAGIC_INDEX};
use crate::encoding::{crc32c, Encbuf};
use crate::labels::Labels;
use crate::{Error, Result};

/// Writes an index file. Call [`IndexWriter::add_symbol`] for every string used in label
/// names and values (sorted, unique), then [`IndexWriter::add_series`] for every series in
/// label order, then [`IndexWriter::close`].
pub struct IndexWriter {
    path: PathBuf,
    w: BufWriter<File>,
    pos: u64,
    toc: Toc,
    in_series: bool,
    /// Encoded symbols (uvarint-prefixed strings), written when the first series comes and kept
    /// to resolve symbol numbers.
    symbuf: Vec<u8>,
    num_symbols: u32,
    /// (start, length) of each symbol's bytes in `symbuf`, in symbol order.
    sym_spans: Vec<(u32, u32)>,
    /// Symbol numbers of the last series' label pairs (they sort like the strings).
    last_series: Vec<u32>,
    /// Whether a series was added.
    any_series: bool,
    /// Scratch: symbol numbers of the series being added.
    cur: Vec<u32>,
    /// Series refs (offset/16) in write order.
    all: Vec<u32>,
    /// (name symbol, value symbol) → series refs.
    postings: HashMap<(u32, u32), Vec<u32>>,
    buf: Encbuf,
    /// Scratch: the series entry being encoded.
    body: Encbuf,
}

impl IndexWriter {
    /// Creates (truncates) the index file at `path` and writes its header.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut iw = IndexWriter {
            w: BufWriter::with_capacity(1 << 20, f),
            path,
            pos: 0,
            toc: Toc::default(),
            in_series: false,
            symbuf: Vec::new(),
            num_symbols: 0,
            sym_spans: Vec::new(),
            last_series: Vec::new(),
            any_series: false,
            cur: Vec::new(),
            all: Vec::new(),
            postings: HashMap::new(),
            buf: Encbuf::with_capacity(1024),
            body: Encbuf::with_capacity(1024),
        };
        let mut hdr = MAGIC_INDEX.to_be_bytes().to_vec();
        hdr.push(FORMAT_V2);
        iw.write(&hdr)?;
        Ok(iw)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(|e| Error::io(&self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn write_buf(&mut self) -> Result<()> {
        let b = std::mem::take(&mut self.buf.b);
        let r = self.write(&b);
        self.buf.b = b;
        r
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(align - rem) as usize])?;
        }
        Ok(())
    }

    /// Adds a symbol; symbols must come in strictly increasing order, before any series.
    pub fn add_symbol(&mut self, sym: &str) -> Result<()> {
        if self.in_series {
            return Err(Error::InvalidArgument(format!(
                "index symbol {sym:?} added after series"
            )));
        }
        if self.num_symbols > 0 && sym <= self.sym_str(self.num_symbols - 1) {
            return Err(Error::InvalidArgument(format!(
                "index symbol {sym:?} out of order"
            )));
        }
        crate::encoding::put_uvarint(&mut self.symbuf, sym.len() as u64);
        let start = self.symbuf.len();
        self.symbuf.extend_from_slice(sym.as_bytes());
        if self.symbuf.len() > u32::MAX as usize - 8 {
            return Err(Error::InvalidArgument(format!(
                "symbol table too large: {} bytes",
                self.symbuf.len()
            )));
        }
        self.sym_spans.push((start as u32, sym.len() as u32));
        self.num_symbols += 1;
        Ok(())
    }

    /// Number of symbols added.
    pub fn num_symbols(&self) -> u32 {
        self.num_symbols
    }

    /// The string of symbol number `i` (which must be below [`IndexWriter::num_symbols`]).
    fn sym_str(&self, i: u32) -> &str {
        let (start, len) = self.sym_spans[i as usize];
        let b = &self.symbuf[start as usize..(start + len) as usize];
        // The bytes were copied from a `&str`, so they are valid UTF-8.
        std::str::from_utf8(b).unwrap_or_default()
    }

    fn finish_symbols(&mut self) -> Result<()> {
        if self.in_series {
            return Ok(());
        }
        self.in_series = true;
        self.toc.symbols = self.pos;
        let len = self.symbuf.len() as u64 + 4;
        if len > u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "symbol table too large: {len} bytes"
            )));
        }
        let count = self.num_symbols.to_be_bytes();
        let crc = crate::encoding::crc32c_append(crc32c(&count), &self.symbuf);
        self.write(&(len as u32).to_be_bytes())?;
        self.write(&count)?;
        let sb = std::mem::take(&mut self.symbuf);
        let r = self.write(&sb);
        self.symbuf = sb;
        r?;
        self.write(&crc.to_be_bytes())?;
        self.toc.series = self.pos;
        Ok(())
    }

    /// The number of symbol `s`, by binary search in the sorted symbol table.
    fn symbol(&self, s: &str) -> Result<u32> {
        let (mut lo, mut hi) = (0u32, self.num_symbols);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.sym_str(mid).cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(Error::InvalidArgument(format!(
            "index symbol {s:?} was not added"
        )))
    }

    /// Adds a series with its chunks (in time order); series must come in increasing label
    /// order. Returns the series reference (offset / 16).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkRefMeta]) -> Result<u64> {
        let mut cur = std::mem::take(&mut self.cur);
        cur.clear();
        for l in labels.iter() {
            match (self.symbol(&l.name), self.symbol(&l.value)) {
                (Ok(n), Ok(v)) => cur.extend([n, v]),
                (Err(e), _) | (_, Err(e)) => {
                    self.cur = cur;
                    return Err(e);
                }
            }
        }
        let r = self.add_series_ids(&cur, chunks);
        self.cur = cur;
        r
    }

    /// As [`IndexWriter::add_series`] with the labels given as symbol numbers (the position of
    /// each string among the added symbols): name, value, name, value… in label name order.
    pub fn add_series_ids(&mut self, lset: &[u32], chunks: &[ChunkRefMeta]) -> Result<u64> {
        self.finish_symbols()?;
        if !lset.len().is_multiple_of(2) {
            return Err(Error::InvalidArgument(format!(
                "index series labels given as an odd number ({}) of symbols",
                lset.len()
            )));
        }
        if let Some(&bad) = lset.iter().find(|&&i| i >= self.num_symbols) {
            return Err(Error::InvalidArgument(format!(
                "index symbol number {bad} out of range ({} symbols)",
                self.num_symbols
            )));
        }
        if self.any_series && lset <= self.last_series.as_slice() {
            return Err(Error::InvalidArgument(format!(
                "out-of-order series added with label set {}",
                self.render(lset)
            )));
        }
        self.pad(16)?;
        let sref = self.pos / 16;
        if sref > u32::MAX as u64 {
            return Err(Error::InvalidArgument(
                "index exceeds the addressable series space".into(),
            ));
        }
        let sref32 = sref as u32;
        let mut body = std::mem::take(&mut self.body);
        body.reset();
        body.put_uvarint((lset.len() / 2) as u64);
        for p in lset.chunks_exact(2) {
            body.put_uvarint(p[0] as u64);
            body.put_uvarint(p[1] as u64);
            self.postings.entry((p[0], p[1])).or_default().push(sref32);
        }
        body.put_uvarint(chunks.len() as u64);
        if let Some(c0) = chunks.first() {
            body.put_varint(c0.min_time);
            body.put_uvarint(c0.max_time.wrapping_sub(c0.min_time) as u64);
            body.put_uvarint(c0.chunk_ref);
            let mut t0 = c0.max_time;
            let mut r0 = c0.chunk_ref as i64;
            for c in &chunks[1..] {
                body.put_uvarint(c.min_time.wrapping_sub(t0) as u64);
                body.put_uvarint(c.max_time.wrapping_sub(c.min_time) as u64);
                t0 = c.max_time;
                body.put_varint((c.chunk_ref as i64).wrapping_sub(r0));
                r0 = c.chunk_ref as i64;
            }
        }
        self.buf.reset();
        self.buf.put_uvarint(body.len() as u64);
        let r = self.write_buf().and_then(|()| {
            body.put_crc32c_of(0);
            self.write(&body.b)
        });
        self.body = body;
        r?;
        self.all.push(sref32);
        self.last_series.clear();
        self.last_series.extend_from_slice(lset);
        self.any_series = true;
        Ok(sref)
    }

    /// `{name="value", …}` of label pairs given as symbol numbers, for error messages.
    fn render(&self, lset: &[u32]) -> String {
        let pairs: Vec<String> = lset
            .chunks_exact(2)
            .map(|p| format!("{}={:?}", self.sym_str(p[0]), self.sym_str(p[1])))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }

    /// Writes label indices, postings, the offset tables and the TOC, then fsyncs the file.
    pub fn close(mut self) -> Result<()> {
        self.finish_symbols()?;
        self.toc.label_indices = self.pos;

        // Postings keys in (name, value) order: symbol numbers sort like their strings.
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        keys.sort_unstable();

        // Label indices, one per name.
        let mut label_index_offsets: Vec<(u32, u64)> = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let name = keys[i].0;
            let mut j = i;
            while j < keys.len() && keys[j].0 == name {
                j += 1;
            }
            self.pad(4)?;
            label_index_offsets.push((name, self.pos));
            let mut e = Encbuf::with_capacity(12 + (j - i) * 4);
            e.put_be32(0); // length, patched below
            e.put_be32(1);
            e.put_be32((j - i) as u32);
            for k in &keys[i..j] {
                e.put_be32(k.1);
            }
            let l = (e.len() - 4) as u32;
            e.b[..4].copy_from_slice(&l.to_be_bytes());
            e.put_crc32c_of(4);
            self.write(&e.b)?;
            i = j;
        }

        // Postings lists.
        self.pad(4)?;
        self.toc.postings = self.pos;
        let mut postings_offsets: Vec<(Option<(u32, u32)>, u64)> =
            Vec::with_capacity(keys.len() + 1);
        let all = std::mem::take(&mut self.all);
        postings_offsets.push((None, self.pos));
        self.write_postings_list(&all)?;
        let mut postings = std::mem::take(&mut self.postings);
        for k in &keys {
            self.pad(4)?;
            postings_offsets.push((Some(*k), self.pos));
            let list = postings.remove(k).unwrap_or_default();
            self.write_postings_list(&list)?;
        }

        // Label offset table.
        self.toc.label_indices_table = self.pos;
        let mut e = Encbuf::with_capacity(1024);
        e.put_be32(0);
        e.put_be32(label_index_offsets.len() as u32);
        for (name, off) in &label_index_offsets {
            e.put_uvarint(1);
            e.put_uvarint_str(self.sym_str(*name));
            e.put_uvarint(*off);
        }
        self.write_table(e)?;

        // Postings offset table.
        self.toc.postings_table = self.pos;
        let mut e = Encbuf::with_capacity(1024);
        e.put_be32(0);
        e.put_be32(postings_offsets.len() as u32);
        for (k, off) in &postings_offsets {
            e.put_uvarint(2);
            match k {
                None => {
                    e.put_uvarint_str("");
                    e.put_uvarint_str("");
                }
                Some((n, v)) => {
                    e.put_uvarint_str(self.sym_str(*n));
                    e.put_uvarint_str(self.sym_str(*v));
                }
            }
            e.put_uvarint(*off);
        }
        self.write_table(e)?;

        // TOC.
        let mut e = Encbuf::with_capacity(52);
        for v in [
            self.toc.symbols,
            self.toc.series,
            self.toc.label_indices,
            self.toc.label_indices_table,
            self.toc.postings,
            self.toc.postings_table,
        ] {
            e.put_be64(v);
        }
        e.put_crc32c_of(0);
        self.write(&e.b)?;
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok(())
    }

    fn write_postings_list(&mut self, list: &[u32]) -> Result<()> {
        let mut e = Encbuf::with_capacity(12 + list.len() * 4);
        e.put_be32((4 + list.len() * 4) as u32);
        e.put_be32(list.len() as u32);
        for r in list {
            e.put_be32(*r);
        }
        e.put_crc32c_of(4);
        self.write(&e.b)
    }

    /// Patches the length of a table starting with a 4-byte length placeholder, appends its
    /// CRC and writes it.
    fn write_table(&mut self, mut e: Encbuf) -> Result<()> {
        let l = e.len() - 4;
        if l > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "index table too large: {l} bytes"
            )));
        }
        e.b[..4].copy_from_slice(&(l as u32).to_be_bytes());
        e.put_crc32c_of(4);
        self.write(&e.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexReader;

    fn chunk(t: i64) -> Vec<ChunkRefMeta> {
        vec![ChunkRefMeta {
            min_time: t,
            max_time: t + 10,
            chunk_ref: 8 + t as u64,
        }]
    }

    #[test]
    fn series_by_ids_write_the_same_bytes_as_by_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let syms = ["", "a", "b", "job", "x", "y"];
        let series = [
            Labels::from_pairs(&[("a", "x"), ("job", "b")]),
            Labels::from_pairs(&[("a", "y")]),
            Labels::from_pairs(&[("a", "y"), ("b", "x")]),
        ];
        let by_labels = tmp.path().join("l");
        let mut w = IndexWriter::create(&by_labels).unwrap();
        for s in syms {
            w.add_symbol(s).unwrap();
        }
        for (i, s) in series.iter().enumerate() {
            w.add_series(s, &chunk(i as i64)).unwrap();
        }
        w.close().unwrap();

        let by_ids = tmp.path().join("i");
        let mut w = IndexWriter::create(&by_ids).unwrap();
        for s in syms {
            w.add_symbol(s).unwrap();
        }
        assert_eq!(w.num_symbols(), 6);
        let ids: [&[u32]; 3] = [&[1, 4, 3, 2], &[1, 5], &[1, 5, 2, 4]];
        for (i, s) in ids.iter().enumerate() {
            w.add_series_ids(s, &chunk(i as i64)).unwrap();
        }
        // Out of order, out of range and odd-length label lists are refused.
        assert!(w.add_series_ids(&[1, 4], &chunk(9)).is_err());
        assert!(w.add_series_ids(&[6, 1], &chunk(9)).is_err());
        assert!(w.add_series_ids(&[5], &chunk(9)).is_err());
        w.close().unwrap();
        assert_eq!(
            std::fs::read(&by_labels).unwrap(),
            std::fs::read(&by_ids).unwrap()
        );
        let r = IndexReader::open(&by_ids).unwrap();
        let refs = crate::index::postings::collect(r.postings("a", "y").unwrap());
        assert_eq!(refs.len(), 2);
        let (ls, chks) = r.series_labels(refs[0]).unwrap();
        assert_eq!(ls, series[1]);
        assert_eq!(chks, chunk(1));
    }

    #[test]
    fn unknown_and_unordered_symbols_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::create(tmp.path().join("x")).unwrap();
        w.add_symbol("").unwrap();
        w.add_symbol("b").unwrap();
        assert!(w.add_symbol("a").is_err());
        assert!(w.add_symbol("b").is_err());
        let err = w
            .add_series(&Labels::from_pairs(&[("b", "zz")]), &[])
            .unwrap_err();
        assert!(err.to_string().contains("zz"), "{err}");
        w.add_series(&Labels::from_pairs(&[("b", "b")]), &[])
            .unwrap();
        assert!(w.add_symbol("c").is_err());
        let err = w
            .add_series(&Labels::from_pairs(&[("b", "b")]), &[])
            .unwrap_err();
        assert!(err.to_string().contains("out-of-order"), "{err}");
    }
}
