//! Writer of index format v2 (layout in the [module docs](super)).

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
    /// Encoded symbols (uvarint-prefixed strings), written when the first series comes.
    symbuf: Vec<u8>,
    num_symbols: u32,
    last_symbol: Option<String>,
    symbols: HashMap<String, u32>,
    last_series: Option<Labels>,
    /// Series refs (offset/16) in write order.
    all: Vec<u32>,
    /// (name symbol, value symbol) → series refs.
    postings: HashMap<(u32, u32), Vec<u32>>,
    buf: Encbuf,
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
            last_symbol: None,
            symbols: HashMap::new(),
            last_series: None,
            all: Vec::new(),
            postings: HashMap::new(),
            buf: Encbuf::with_capacity(1024),
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
        if let Some(last) = &self.last_symbol {
            if sym <= last.as_str() {
                return Err(Error::InvalidArgument(format!(
                    "index symbol {sym:?} out of order"
                )));
            }
        }
        crate::encoding::put_uvarint(&mut self.symbuf, sym.len() as u64);
        self.symbuf.extend_from_slice(sym.as_bytes());
        self.symbols.insert(sym.to_string(), self.num_symbols);
        self.num_symbols += 1;
        self.last_symbol = Some(sym.to_string());
        Ok(())
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
        self.write(&sb)?;
        self.write(&crc.to_be_bytes())?;
        self.toc.series = self.pos;
        Ok(())
    }

    fn symbol(&self, s: &str) -> Result<u32> {
        self.symbols
            .get(s)
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("index symbol {s:?} was not added")))
    }

    /// Adds a series with its chunks (in time order); series must come in increasing label
    /// order. Returns the series reference (offset / 16).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkRefMeta]) -> Result<u64> {
        self.finish_symbols()?;
        if let Some(last) = &self.last_series {
            if labels <= last {
                return Err(Error::InvalidArgument(format!(
                    "out-of-order series added with label set {labels}"
                )));
            }
        }
        self.pad(16)?;
        let sref = self.pos / 16;
        if sref > u32::MAX as u64 {
            return Err(Error::InvalidArgument(
                "index exceeds the addressable series space".into(),
            ));
        }
        let sref32 = sref as u32;
        let mut body = Encbuf::with_capacity(64 + chunks.len() * 8);
        body.put_uvarint(labels.len() as u64);
        for l in labels.iter() {
            let n = self.symbol(&l.name)?;
            let v = self.symbol(&l.value)?;
            body.put_uvarint(n as u64);
            body.put_uvarint(v as u64);
            self.postings.entry((n, v)).or_default().push(sref32);
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
        self.write_buf()?;
        body.put_crc32c_of(0);
        self.write(&body.b)?;
        self.all.push(sref32);
        self.last_series = Some(labels.clone());
        Ok(sref)
    }

    /// Writes label indices, postings, the offset tables and the TOC, then fsyncs the file.
    pub fn close(mut self) -> Result<()> {
        self.finish_symbols()?;
        self.toc.label_indices = self.pos;

        // Postings keys in (name, value) order: symbol numbers sort like their strings.
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        keys.sort_unstable();
        let mut sym_names: Vec<&str> = vec![""; self.num_symbols as usize];
        for (s, &i) in &self.symbols {
            sym_names[i as usize] = s.as_str();
        }
        let sym_names: Vec<String> = sym_names.into_iter().map(str::to_string).collect();

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
            e.put_uvarint_str(&sym_names[*name as usize]);
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
                    e.put_uvarint_str(&sym_names[*n as usize]);
                    e.put_uvarint_str(&sym_names[*v as usize]);
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
