//! Reader of index format v2 (layout in the [module docs](super)) over a memory map.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::postings::{intersect, merge, without, BigEndianPostings, EmptyPostings, Postings};
use super::{ChunkRefMeta, Toc, FORMAT_V2, HEADER_LEN, MAGIC_INDEX, TOC_LEN};
use crate::encoding::{crc32c, Decbuf};
use crate::labels::{Label, Labels, MatchType, Matcher};
use crate::{Error, Result};

/// Reads an index file through a memory map. The TOC, symbol table and postings offset table
/// are checked (lengths and CRCs) when opening; series and postings lists are checked when
/// read.
pub struct IndexReader {
    path: PathBuf,
    map: Mmap,
    toc: Toc,
    /// Every symbol's bytes as (offset in the file, length), checked to be UTF-8 when
    /// opening, so looking one up is a slice of the map.
    symbol_offsets: Vec<(u32, u32)>,
    /// Label name → (file position of the value string in the postings offset table, offset
    /// of its postings list), values sorted. Values are read from the map when needed.
    postings: BTreeMap<String, Vec<(u64, u64)>>,
    /// Offset of the all-series postings list.
    all_postings: u64,
}

impl std::fmt::Debug for IndexReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader")
            .field("path", &self.path)
            .field("toc", &self.toc)
            .finish()
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl IndexReader {
    /// Opens and maps the index file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: index files are immutable once written; the map is read-only.
        let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(&path, e))?;
        let mut r = IndexReader {
            path,
            map,
            toc: Toc::default(),
            symbol_offsets: Vec::new(),
            postings: BTreeMap::new(),
            all_postings: 0,
        };
        r.init()?;
        Ok(r)
    }

    fn corrupt(&self, offset: u64, msg: impl Into<String>) -> Error {
        Error::corruption(&self.path, offset, msg)
    }

    /// Wraps a decoding error of the section at `offset` into a corruption error.
    fn dec_err(&self, offset: u64, what: &str) -> impl Fn(Error) -> Error + '_ {
        let what = what.to_string();
        move |e| self.corrupt(offset, format!("{what}: {e}"))
    }

    fn init(&mut self) -> Result<()> {
        let b: &[u8] = &self.map;
        if b.len() < HEADER_LEN + TOC_LEN {
            return Err(self.corrupt(0, format!("index too short: {} bytes", b.len())));
        }
        let magic = be32(b, 0);
        if magic != MAGIC_INDEX {
            return Err(self.corrupt(0, format!("invalid magic number {magic:#010x}")));
        }
        if b[4] != FORMAT_V2 {
            return Err(self.corrupt(4, format!("unsupported index format version {}", b[4])));
        }
        let toc_at = b.len() - TOC_LEN;
        let toc_b = &b[toc_at..];
        let want = be32(toc_b, 48);
        if crc32c(&toc_b[..48]) != want {
            return Err(self.corrupt(toc_at as u64, "TOC checksum mismatch"));
        }
        let o = |i: usize| u64::from_be_bytes(toc_b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let toc = Toc {
            symbols: o(0),
            series: o(1),
            label_indices: o(2),
            label_indices_table: o(3),
            postings: o(4),
            postings_table: o(5),
        };
        for (name, v) in [
            ("symbols", toc.symbols),
            ("series", toc.series),
            ("label indices", toc.label_indices),
            ("label offset table", toc.label_indices_table),
            ("postings", toc.postings),
            ("postings offset table", toc.postings_table),
        ] {
            if v > toc_at as u64 || v < HEADER_LEN as u64 {
                return Err(self.corrupt(
                    toc_at as u64,
                    format!("TOC offset of {name} out of range: {v}"),
                ));
            }
        }
        self.toc = toc;

        // Symbols.
        let (content, _) = self.table(toc.symbols, "symbol table")?;
        let mut d = Decbuf::new(content);
        let n = d
            .be32()
            .map_err(self.dec_err(toc.symbols, "symbol table"))?;
        let mut offs = Vec::with_capacity(n as usize);
        let mut prev: Option<&str> = None;
        for _ in 0..n {
            let at = toc.symbols + 4 + d.position() as u64;
            let sym = d.uvarint_str().map_err(self.dec_err(at, "symbol"))?;
            // Sorted, so that symbol references order as their strings (see `series_refs`).
            if prev.is_some_and(|p| p >= sym) {
                return Err(self.corrupt(at, format!("symbols not sorted at {sym:?}")));
            }
            prev = Some(sym);
            let start = toc.symbols + 4 + (d.position() - sym.len()) as u64;
            let start =
                u32::try_from(start).map_err(|_| self.corrupt(at, "symbol offset beyond 4 GiB"))?;
            offs.push((start, sym.len() as u32));
        }
        self.symbol_offsets = offs;

        // Postings offset table.
        let (content, _) = self.table(toc.postings_table, "postings offset table")?;
        let mut d = Decbuf::new(content);
        let n = d
            .be32()
            .map_err(self.dec_err(toc.postings_table, "postings offset table"))?;
        let mut postings: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        let mut all = None;
        let mut prev: Option<(&str, &str)> = None;
        for _ in 0..n {
            let at = toc.postings_table + 4 + d.position() as u64;
            let err = self.dec_err(at, "postings offset table entry");
            let keys = d.uvarint().map_err(&err)?;
            if keys != 2 {
                return Err(self.corrupt(
                    at,
                    format!("postings offset table entry has {keys} keys, want 2"),
                ));
            }
            let name = d.uvarint_str().map_err(&err)?;
            let vpos = toc.postings_table + 4 + d.position() as u64;
            let value = d.uvarint_str().map_err(&err)?;
            let off = d.uvarint().map_err(&err)?;
            if name.is_empty() && value.is_empty() {
                all = Some(off);
                continue;
            }
            if prev.is_some_and(|(pn, pv)| pn == name && pv >= value) {
                return Err(self.corrupt(
                    at,
                    format!("postings offset table not sorted at {name}={value:?}"),
                ));
            }
            prev = Some((name, value));
            match postings.get_mut(name) {
                Some(v) => v.push((vpos, off)),
                None => {
                    postings.insert(name.to_string(), vec![(vpos, off)]);
                }
            }
        }
        self.all_postings =
            all.ok_or_else(|| self.corrupt(toc.postings_table, "no all-series postings entry"))?;
        self.postings = postings;
        Ok(())
    }

    /// A `len <4B> │ content │ CRC <4B>` table at `off`: its content, CRC-checked, and its end.
    fn table(&self, off: u64, what: &str) -> Result<(&[u8], u64)> {
        let b: &[u8] = &self.map;
        if off > b.len() as u64 || off as usize + 4 > b.len() {
            return Err(self.corrupt(off, format!("{what} length out of range")));
        }
        let o = off as usize;
        let len = be32(b, o) as usize;
        let end = o + 4 + len + 4;
        if end > b.len() {
            return Err(self.corrupt(off, format!("{what} of {len} bytes runs past end of file")));
        }
        let content = &b[o + 4..o + 4 + len];
        let want = be32(b, o + 4 + len);
        let got = crc32c(content);
        if want != got {
            return Err(self.corrupt(
                off,
                format!("{what} checksum mismatch: stored {want:#010x}, computed {got:#010x}"),
            ));
        }
        Ok((content, end as u64))
    }

    /// The index file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table of contents.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Number of symbols.
    pub fn num_symbols(&self) -> usize {
        self.symbol_offsets.len()
    }

    /// The symbol with reference (position) `i`.
    pub fn symbol(&self, i: u32) -> Result<&str> {
        let (off, len) = *self.symbol_offsets.get(i as usize).ok_or_else(|| {
            self.corrupt(
                self.toc.symbols,
                format!("symbol reference {i} out of range"),
            )
        })?;
        let (off, len) = (off as usize, len as usize);
        let b = self
            .map
            .get(off..off + len)
            .ok_or_else(|| self.corrupt(off as u64, "symbol out of range"))?;
        // SAFETY: these bytes were checked to be UTF-8 when the index was opened, and the
        // map is read-only over an immutable file.
        Ok(unsafe { std::str::from_utf8_unchecked(b) })
    }

    /// The symbol with reference `i`, or `""` if there is none: for references already
    /// checked (those [`IndexReader::series_refs`] returns), read without building an error.
    #[inline]
    pub fn symbol_or_empty(&self, i: u32) -> &str {
        let Some(&(off, len)) = self.symbol_offsets.get(i as usize) else {
            return "";
        };
        let b = self.map.get(off as usize..off as usize + len as usize);
        // SAFETY: as in `symbol`.
        b.map_or("", |b| unsafe { std::str::from_utf8_unchecked(b) })
    }

    /// All symbols in order.
    pub fn symbols(&self) -> impl Iterator<Item = Result<&str>> + '_ {
        (0..self.symbol_offsets.len() as u32).map(move |i| self.symbol(i))
    }

    /// The label value string stored at file position `pos` (checked when opening).
    fn value_at(&self, pos: u64) -> &str {
        let b = self.map.get(pos as usize..).unwrap_or_default();
        Decbuf::new(b).uvarint_str().unwrap_or_default()
    }

    /// Label names having at least one series, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.postings.keys().map(String::as_str).collect()
    }

    /// Values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        self.postings
            .get(name)
            .map(|v| v.iter().map(|(p, _)| self.value_at(*p)).collect())
            .unwrap_or_default()
    }

    /// The postings list stored at `off`.
    fn postings_at(&self, off: u64) -> Result<BigEndianPostings<'_>> {
        let (content, _) = self.table(off, "postings list")?;
        let n = if content.len() >= 4 {
            be32(content, 0) as usize
        } else {
            usize::MAX
        };
        if content.len() < 4 || content.len() - 4 != n.saturating_mul(4) {
            return Err(self.corrupt(
                off,
                format!(
                    "postings list length {} does not match its count",
                    content.len()
                ),
            ));
        }
        Ok(BigEndianPostings::new(&content[4..]))
    }

    /// All series references, in label order.
    pub fn all_postings(&self) -> Result<BigEndianPostings<'_>> {
        self.postings_at(self.all_postings)
    }

    /// The series having `name=value`.
    pub fn postings(&self, name: &str, value: &str) -> Result<Box<dyn Postings + '_>> {
        if name.is_empty() && value.is_empty() {
            return Ok(Box::new(self.all_postings()?));
        }
        let Some(vals) = self.postings.get(name) else {
            return Ok(Box::new(EmptyPostings));
        };
        match vals.binary_search_by(|(p, _)| self.value_at(*p).cmp(value)) {
            Ok(i) => Ok(Box::new(self.postings_at(vals[i].1)?)),
            Err(_) => Ok(Box::new(EmptyPostings)),
        }
    }

    /// The union of the postings of `name` for every value of `values`.
    pub fn postings_for_values(
        &self,
        name: &str,
        values: &[&str],
    ) -> Result<Box<dyn Postings + '_>> {
        let mut its = Vec::with_capacity(values.len());
        for v in values {
            its.push(self.postings(name, v)?);
        }
        Ok(merge(its))
    }

    /// Union of the postings of the values of `name` that `pred` accepts; `prefix` (if any)
    /// narrows the scan to values starting with it.
    fn postings_where(
        &self,
        name: &str,
        prefix: Option<&str>,
        pred: impl Fn(&str) -> bool,
    ) -> Result<Box<dyn Postings + '_>> {
        let Some(vals) = self.postings.get(name) else {
            return Ok(Box::new(EmptyPostings));
        };
        let start = prefix
            .map(|p| vals.partition_point(|(vp, _)| self.value_at(*vp) < p))
            .unwrap_or(0);
        let mut its: Vec<Box<dyn Postings + '_>> = Vec::new();
        for (vp, off) in &vals[start..] {
            let v = self.value_at(*vp);
            if let Some(p) = prefix {
                if !v.starts_with(p) {
                    break;
                }
            }
            if pred(v) {
                its.push(Box::new(self.postings_at(*off)?));
            }
        }
        Ok(merge(its))
    }

    /// Postings of the series whose `m.name` label matches `m` (series without the label are
    /// not included, whatever `m` says about the empty string).
    fn postings_for_matcher(&self, m: &Matcher) -> Result<Box<dyn Postings + '_>> {
        match m.kind {
            MatchType::Equal => self.postings(&m.name, &m.value),
            MatchType::Regexp => {
                if let Some(set) = m.set_matches() {
                    let vals: Vec<&str> = set.iter().map(String::as_str).collect();
                    return self.postings_for_values(&m.name, &vals);
                }
                self.postings_where(&m.name, m.prefix(), |v| m.matches(v))
            }
            _ => self.postings_where(&m.name, None, |v| m.matches(v)),
        }
    }

    /// Postings of the series having label `m.name` with a value that `m` does not match.
    fn inverse_postings_for_matcher(&self, m: &Matcher) -> Result<Box<dyn Postings + '_>> {
        if m.kind == MatchType::NotEqual {
            return self.postings(&m.name, &m.value);
        }
        if m.kind == MatchType::NotRegexp {
            let inv = Matcher::new(MatchType::Regexp, m.name.clone(), m.value.clone())?;
            if let Some(set) = inv.set_matches() {
                let vals: Vec<&str> = set.iter().map(String::as_str).collect();
                return self.postings_for_values(&m.name, &vals);
            }
            return self.postings_where(&m.name, inv.prefix(), |v| inv.matches(v));
        }
        self.postings_where(&m.name, None, |v| !m.matches(v))
    }

    /// The sorted references of the series matching every matcher, with Prometheus's
    /// semantics: a matcher that matches the empty string also selects series without the
    /// label. No matchers select nothing.
    pub fn postings_for_matchers(&self, ms: &[Matcher]) -> Result<Vec<u64>> {
        if ms.is_empty() {
            return Ok(Vec::new());
        }
        let mut its: Vec<Box<dyn Postings + '_>> = Vec::new();
        let mut not_its: Vec<Box<dyn Postings + '_>> = Vec::new();
        let must_be_set = |name: &str| ms.iter().any(|m| m.name == name && !m.matches_empty());
        for m in ms {
            // {x=~".*"} selects everything and restricts nothing.
            if m.kind == MatchType::Regexp && m.value == ".*" {
                continue;
            }
            let matches_empty = m.matches_empty();
            let is_not = matches!(m.kind, MatchType::NotEqual | MatchType::NotRegexp);
            if must_be_set(&m.name) {
                if is_not && matches_empty {
                    // l!="foo" with l set by another matcher: subtract l="foo".
                    not_its.push(self.inverse_postings_for_matcher(m)?);
                } else if is_not {
                    // l!="" and similar: values the inner matcher rejects.
                    its.push(self.postings_where(&m.name, None, |v| m.matches(v))?);
                } else {
                    its.push(self.postings_for_matcher(m)?);
                }
            } else {
                // The matcher selects the empty value: everything except series whose value
                // it rejects.
                not_its.push(self.inverse_postings_for_matcher(m)?);
            }
        }
        if its.is_empty() {
            its.push(Box::new(self.all_postings()?));
        }
        let mut it = intersect(its);
        for n in not_its {
            it = without(it, n);
        }
        Ok(super::postings::collect(it))
    }

    /// Decodes series `r` (offset / 16) into its labels and chunk metas.
    pub fn series(
        &self,
        r: u64,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkRefMeta>,
    ) -> Result<()> {
        let mut refs = Vec::new();
        self.series_refs(r, &mut refs, chunks)?;
        labels.clear();
        labels.extend(
            crate::querier::LabelPairs::of_symbols(self, &refs).map(|(n, v)| Label::new(n, v)),
        );
        Ok(())
    }

    /// Decodes series `r` (offset / 16) into the symbol references of its labels (name,
    /// value; checked to be in the symbol table, names in increasing order) and its chunk
    /// metas, without building any string.
    pub fn series_refs(
        &self,
        r: u64,
        labels: &mut Vec<(u32, u32)>,
        chunks: &mut Vec<ChunkRefMeta>,
    ) -> Result<()> {
        labels.clear();
        chunks.clear();
        let off = r.saturating_mul(16);
        let b: &[u8] = &self.map;
        if off < self.toc.series
            || off >= self.toc.label_indices.max(self.toc.series)
            || off as usize >= b.len()
        {
            return Err(self.corrupt(off, format!("series reference {r} out of range")));
        }
        let mut d = Decbuf::new(&b[off as usize..]);
        let err = self.dec_err(off, "series");
        let len = d.uvarint().map_err(&err)? as usize;
        if d.remaining() < len.saturating_add(4) {
            return Err(self.corrupt(off, format!("series of {len} bytes runs past end of file")));
        }
        let body = &d.rest()[..len];
        let want = be32(d.rest(), len);
        if crc32c(body) != want {
            return Err(self.corrupt(off, "series checksum mismatch"));
        }
        let mut d = Decbuf::new(body);
        let nl = d.uvarint().map_err(&err)?;
        // Symbols are sorted (checked on opening): names in increasing order have increasing
        // references, compared without reading the strings.
        let mut prev: Option<u32> = None;
        let nsym = self.symbol_offsets.len();
        for _ in 0..nl {
            let n = d.uvarint32().map_err(&err)?;
            let v = d.uvarint32().map_err(&err)?;
            if n as usize >= nsym || v as usize >= nsym {
                return Err(self.corrupt(off, format!("series {r}: symbol reference out of range")));
            }
            if prev.is_some_and(|p| p >= n) {
                let name = self.symbol(n)?;
                return Err(self.corrupt(
                    off,
                    format!("series {r}: label names not sorted at {name:?}"),
                ));
            }
            prev = Some(n);
            labels.push((n, v));
        }
        let nc = d.uvarint().map_err(&err)?;
        if nc > 0 {
            let mint = d.varint().map_err(&err)?;
            let maxt = (d.uvarint().map_err(&err)? as i64).wrapping_add(mint);
            let mut cref = d.uvarint().map_err(&err)? as i64;
            chunks.push(ChunkRefMeta {
                min_time: mint,
                max_time: maxt,
                chunk_ref: cref as u64,
            });
            let mut t0 = maxt;
            for _ in 1..nc {
                let mint = (d.uvarint().map_err(&err)? as i64).wrapping_add(t0);
                let maxt = (d.uvarint().map_err(&err)? as i64).wrapping_add(mint);
                cref = cref.wrapping_add(d.varint().map_err(&err)?);
                chunks.push(ChunkRefMeta {
                    min_time: mint,
                    max_time: maxt,
                    chunk_ref: cref as u64,
                });
                t0 = maxt;
            }
        }
        Ok(())
    }

    /// Decodes series `r` into a label set and chunk metas.
    pub fn series_labels(&self, r: u64) -> Result<(Labels, Vec<ChunkRefMeta>)> {
        let mut ls = Vec::new();
        let mut chks = Vec::new();
        self.series(r, &mut ls, &mut chks)?;
        Ok((Labels::from_sorted(ls), chks))
    }

    /// Checks every label index and the label offset table (lengths, CRCs), as `promtool`
    /// readers of v1 tables would.
    pub fn check_label_indices(&self) -> Result<()> {
        let (content, _) = self.table(self.toc.label_indices_table, "label offset table")?;
        let mut d = Decbuf::new(content);
        let n = d
            .be32()
            .map_err(self.dec_err(self.toc.label_indices_table, "label offset table"))?;
        for _ in 0..n {
            let at = self.toc.label_indices_table + 4 + d.position() as u64;
            let err = self.dec_err(at, "label offset table entry");
            let k = d.uvarint().map_err(&err)?;
            for _ in 0..k {
                d.uvarint_str().map_err(&err)?;
            }
            let off = d.uvarint().map_err(&err)?;
            self.table(off, "label index")?;
        }
        Ok(())
    }
}
