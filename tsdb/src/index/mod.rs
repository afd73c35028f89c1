//! Index format v2 of a persistent block (`<block>/index`), byte-compatible with Prometheus.
//!
//! All integers are big-endian; `uvarint`/`varint` are Go varints; every section is followed by
//! a CRC-32C over its content (not over its length field).
//!
//! ```text
//! ┌────────────────────────────┬─────────────────────┐
//! │ magic 0xBAAAD700 (4B)      │ version 2 (1B)      │
//! ├────────────────────────────┴─────────────────────┤
//! │ symbol table                                     │
//! │ series (each aligned to 16 bytes)                │
//! │ label index 1 … n (each aligned to 4 bytes)      │
//! │ postings 1 … n (each aligned to 4 bytes)         │
//! │ label offset table                               │
//! │ postings offset table                            │
//! │ TOC                                              │
//! └──────────────────────────────────────────────────┘
//!
//! symbol table:  len <4B> │ #symbols <4B> │ (len <uvarint>, bytes)… │ CRC <4B>
//!                (len counts #symbols and the symbols; symbols are sorted and unique; a
//!                symbol's reference is its 0-based position)
//! series:        len <uvarint> │ #labels <uvarint> │ (name ref, value ref <uvarint>)… │
//!                #chunks <uvarint> │ chunk 0: mint <varint>, maxt-mint <uvarint>, ref <uvarint> │
//!                chunk i: mint - prev maxt <uvarint>, maxt-mint <uvarint>,
//!                         ref - prev ref <varint> │ CRC <4B>
//!                (a series' reference is its offset / 16; series are sorted by labels)
//! label index:   len <4B> │ #names = 1 <4B> │ #values <4B> │ value symbol ref <4B>… │ CRC <4B>
//!                (one per label name, in name order; kept for v1 readers)
//! postings:      len <4B> │ #refs <4B> │ series ref <4B>… │ CRC <4B>
//!                (first the list of all series, key ("", ""), then by name and value)
//! label offset table:    len <4B> │ #entries <4B> │ (n = 1 <uvarint>, name <uvarint str>,
//!                        offset <uvarint>)… │ CRC <4B>
//! postings offset table: len <4B> │ #entries <4B> │ (n = 2 <uvarint>, name <uvarint str>,
//!                        value <uvarint str>, offset <uvarint>)… │ CRC <4B>
//! TOC:           symbols, series, label indices, label offset table, postings,
//!                postings offset table: offsets <8B each> │ CRC <4B>  (last 52 bytes)
//! ```

pub mod postings;
mod reader;
mod writer;

pub use postings::{intersect, merge, without, BigEndianPostings, ListPostings, Postings};
pub use reader::IndexReader;
pub use writer::IndexWriter;

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Index format version 1 (read-only support is not provided).
pub const FORMAT_V1: u8 = 1;
/// Index format version 2, the one written and read.
pub const FORMAT_V2: u8 = 2;
/// Size of the table of contents at the end of the file.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// Size of the file header (magic and version).
pub const HEADER_LEN: usize = 5;

/// A chunk as the index refers to it: time range and chunk reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkRefMeta {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// Reference into the block's chunk segment files.
    pub chunk_ref: u64,
}

/// Offsets of an index file's sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Toc {
    /// Symbol table.
    pub symbols: u64,
    /// First series.
    pub series: u64,
    /// First label index.
    pub label_indices: u64,
    /// Label offset table.
    pub label_indices_table: u64,
    /// First postings list.
    pub postings: u64,
    /// Postings offset table.
    pub postings_table: u64,
}
