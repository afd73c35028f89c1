//! Byte-level helpers shared by every on-disk format: an appending encoder, a bounds-checked
//! decoder, Go-compatible varints and CRC-32 Castagnoli.
//!
//! Integers are big-endian, as in all Prometheus formats. `uvarint` is Go's
//! `binary.PutUvarint` (7 bits per byte, low groups first, high bit = more); `varint` is Go's
//! zig-zag `binary.PutVarint`. Strings are a uvarint length followed by the bytes.

/// CRC-32 Castagnoli of `data`.
///
/// Short buffers (a chunk, a record) go through the CPU's CRC instruction over unaligned
/// 8-byte loads (the `crc32c` crate first walks byte by byte to an aligned address, at three
/// cycles a byte); longer ones through the crate, which splits them into three interleaved
/// streams.
pub fn crc32c(data: &[u8]) -> u32 {
    if data.len() < SHORT_CRC_MAX {
        return crc32c_each([data])[0];
    }
    crc32c::crc32c(data)
}

/// CRC-32 Castagnoli of each of `bufs` into `out` (as long), computed four at a time side
/// by side: the CPU's CRC instruction has a latency of three cycles and a throughput of
/// one, so three or four independent buffers go nearly as fast as one (the chunks of one
/// series, checked before decoding).
pub fn crc32c_many(bufs: &[&[u8]], out: &mut [u32]) {
    assert_eq!(bufs.len(), out.len());
    let mut groups = bufs.chunks_exact(4);
    let mut o = out.chunks_exact_mut(4);
    for (b, o) in groups.by_ref().zip(o.by_ref()) {
        o.copy_from_slice(&crc32c_each([b[0], b[1], b[2], b[3]]));
    }
    let (b, o) = (groups.remainder(), o.into_remainder());
    match *b {
        [x, y, z] => o.copy_from_slice(&crc32c_each([x, y, z])),
        [x, y] => o.copy_from_slice(&crc32c_each([x, y])),
        [x] => o[0] = crc32c(x),
        _ => {}
    }
}

/// [`crc32c_many`] of `K` buffers.
fn crc32c_each<const K: usize>(bufs: [&[u8]; K]) -> [u32; K] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2, checked just above.
        return unsafe { hw::crc32c_each(bufs) };
    }
    bufs.map(crc32c::crc32c)
}

/// Buffers shorter than this are checked word by word ([`crc32c`]); from about three times
/// the crate's 256-byte stride on, its three interleaved streams are faster.
const SHORT_CRC_MAX: usize = 768;

#[cfg(target_arch = "x86_64")]
mod hw {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    /// The 8-byte little-endian word of `b` at `at`.
    #[inline(always)]
    fn word(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
    }

    /// [`super::crc32c_each`] with the CRC instruction: the words all buffers have, in
    /// lockstep, then each buffer's rest on its own.
    #[target_feature(enable = "sse4.2")]
    pub(super) fn crc32c_each<const K: usize>(bufs: [&[u8]; K]) -> [u32; K] {
        let mut crc = [u64::from(u32::MAX); K];
        let common = bufs.iter().map(|b| b.len() / 8).min().unwrap_or(0);
        for w in 0..common {
            for (c, b) in crc.iter_mut().zip(&bufs) {
                *c = _mm_crc32_u64(*c, word(b, w * 8));
            }
        }
        let mut out = [0u32; K];
        for ((o, &c), b) in out.iter_mut().zip(&crc).zip(&bufs) {
            let mut c = c;
            let mut at = common * 8;
            while at + 8 <= b.len() {
                c = _mm_crc32_u64(c, word(b, at));
                at += 8;
            }
            let mut c = c as u32;
            for &x in &b[at..] {
                c = _mm_crc32_u8(c, x);
            }
            *o = !c;
        }
        out
    }
}

/// Continues a CRC-32 Castagnoli over more data.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// An appending encoder over a `Vec<u8>`.
#[derive(Default, Debug, Clone)]
pub struct Encbuf {
    /// The bytes written so far.
    pub b: Vec<u8>,
}

impl Encbuf {
    /// A new empty buffer.
    pub fn new() -> Self {
        Encbuf { b: Vec::new() }
    }
    /// A new buffer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Encbuf {
            b: Vec::with_capacity(n),
        }
    }
    /// Empties the buffer, keeping its allocation.
    pub fn reset(&mut self) {
        self.b.clear();
    }
    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.b.len()
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    /// The bytes written.
    pub fn get(&self) -> &[u8] {
        &self.b
    }
    /// Appends one byte.
    pub fn put_byte(&mut self, v: u8) {
        self.b.push(v);
    }
    /// Appends raw bytes.
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.b.extend_from_slice(v);
    }
    /// Appends a big-endian u16.
    pub fn put_be16(&mut self, v: u16) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u32.
    pub fn put_be32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u64.
    pub fn put_be64(&mut self, v: u64) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian f64 (its IEEE bits).
    pub fn put_be_f64(&mut self, v: f64) {
        self.put_be64(v.to_bits());
    }
    /// Appends a Go uvarint.
    pub fn put_uvarint(&mut self, v: u64) {
        put_uvarint(&mut self.b, v);
    }
    /// Appends a Go zig-zag varint.
    pub fn put_varint(&mut self, v: i64) {
        put_varint(&mut self.b, v);
    }
    /// Appends a uvarint length and the string's bytes.
    pub fn put_uvarint_str(&mut self, s: &str) {
        self.put_uvarint(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
    }
    /// Appends a uvarint length and the bytes.
    pub fn put_uvarint_bytes(&mut self, s: &[u8]) {
        self.put_uvarint(s.len() as u64);
        self.b.extend_from_slice(s);
    }
    /// Appends the CRC-32C of `self.b[from..]` as a big-endian u32.
    pub fn put_crc32c_of(&mut self, from: usize) {
        let c = crc32c(&self.b[from..]);
        self.put_be32(c);
    }
}

/// Appends a Go uvarint to `b`.
pub fn put_uvarint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// Appends a Go zig-zag varint to `b`.
pub fn put_varint(b: &mut Vec<u8>, v: i64) {
    put_uvarint(b, ((v << 1) ^ (v >> 63)) as u64);
}

/// Decodes a Go uvarint from the start of `b`: the value and the bytes it took.
#[inline]
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    // One and two bytes (values below 16384) inline: most lengths, references and deltas.
    match *b {
        [b0, ..] if b0 < 0x80 => Some((u64::from(b0), 1)),
        [b0, b1, ..] if b1 < 0x80 => Some((u64::from(b0 & 0x7f) | u64::from(b1) << 7, 2)),
        _ => uvarint_long(b),
    }
}

/// [`uvarint`] of three bytes or more, or cut short.
#[inline(never)]
fn uvarint_long(b: &[u8]) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    let mut s = 0u32;
    for (i, &byte) in b.iter().enumerate() {
        if i == 10 {
            return None;
        }
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None;
            }
            return Some((x | (byte as u64) << s, i + 1));
        }
        x |= ((byte & 0x7f) as u64) << s;
        s += 7;
    }
    None
}

/// Decodes a Go zig-zag varint from the start of `b`.
pub fn varint(b: &[u8]) -> Option<(i64, usize)> {
    let (ux, n) = uvarint(b)?;
    let mut x = (ux >> 1) as i64;
    if ux & 1 != 0 {
        x = !x;
    }
    Some((x, n))
}

/// A bounds-checked decoder over a byte slice. Reads past the end return an error naming the
/// field being read instead of panicking.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    b: &'a [u8],
    pos: usize,
}

type DecResult<T> = Result<T, crate::Error>;

fn short(what: &str, pos: usize) -> crate::Error {
    crate::Error::Encoding(format!(
        "unexpected end of data reading {what} at byte {pos}"
    ))
}

impl<'a> Decbuf<'a> {
    /// A decoder over `b` starting at its first byte.
    pub fn new(b: &'a [u8]) -> Self {
        Decbuf { b, pos: 0 }
    }
    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    /// The bytes left, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.pos..]
    }
    /// Whether everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.b.len()
    }
    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> DecResult<()> {
        self.bytes(n).map(|_| ())
    }
    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> DecResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(short("bytes", self.pos));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Reads one byte.
    pub fn byte(&mut self) -> DecResult<u8> {
        Ok(self.bytes(1).map_err(|_| short("byte", self.pos))?[0])
    }
    /// Reads a big-endian u16.
    pub fn be16(&mut self) -> DecResult<u16> {
        let s = self.bytes(2).map_err(|_| short("u16", self.pos))?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    /// Reads a big-endian u32.
    pub fn be32(&mut self) -> DecResult<u32> {
        let s = self.bytes(4).map_err(|_| short("u32", self.pos))?;
        Ok(u32::from_be_bytes(s.try_into().unwrap()))
    }
    /// Reads a big-endian u64.
    pub fn be64(&mut self) -> DecResult<u64> {
        let s = self.bytes(8).map_err(|_| short("u64", self.pos))?;
        Ok(u64::from_be_bytes(s.try_into().unwrap()))
    }
    /// Reads a big-endian f64.
    pub fn be_f64(&mut self) -> DecResult<f64> {
        Ok(f64::from_bits(self.be64()?))
    }
    /// Reads a Go uvarint.
    #[inline(always)]
    pub fn uvarint(&mut self) -> DecResult<u64> {
        let (v, n) = uvarint(self.rest()).ok_or_else(|| short("uvarint", self.pos))?;
        self.pos += n;
        Ok(v)
    }
    /// Reads a Go uvarint that must fit in u32.
    #[inline(always)]
    pub fn uvarint32(&mut self) -> DecResult<u32> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| {
            crate::Error::Encoding(format!("uvarint {v} overflows u32 at byte {}", self.pos))
        })
    }
    /// Reads a Go zig-zag varint.
    #[inline(always)]
    pub fn varint(&mut self) -> DecResult<i64> {
        let ux = self.uvarint().map_err(|_| short("varint", self.pos))?;
        Ok(((ux >> 1) as i64) ^ -((ux & 1) as i64))
    }
    /// Reads a uvarint-length-prefixed byte string.
    pub fn uvarint_bytes(&mut self) -> DecResult<&'a [u8]> {
        let n = self.uvarint()? as usize;
        self.bytes(n).map_err(|_| short("string", self.pos))
    }
    /// Reads a uvarint-length-prefixed UTF-8 string.
    pub fn uvarint_str(&mut self) -> DecResult<&'a str> {
        let pos = self.pos;
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b)
            .map_err(|_| crate::Error::Encoding(format!("invalid UTF-8 string at byte {pos}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(varint(&b), Some((v, b.len())));
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        assert_eq!(uvarint(&[0x80]), None);
    }

    #[test]
    fn uvarints_of_every_length_decode_in_and_out_of_line() {
        // Around each length's edge (the one- and two-byte cases are inlined, the rest not),
        // through the free function and a `Decbuf`, followed by other bytes or not.
        let mut vals = vec![0u64, u64::MAX];
        for bits in (7..64).step_by(7) {
            vals.extend([(1u64 << bits) - 1, 1 << bits, (1 << bits) + 1]);
        }
        for v in vals {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let n = b.len();
            assert_eq!(uvarint(&b), Some((v, n)), "{v}");
            assert_eq!(uvarint(&b[..n - 1]), None, "{v} cut short");
            b.extend([0x7f, 0x01]);
            assert_eq!(uvarint(&b), Some((v, n)), "{v} with more after");
            let mut d = Decbuf::new(&b);
            assert_eq!(d.uvarint().unwrap(), v);
            assert_eq!(d.position(), n);
            let mut d = Decbuf::new(&b[..n - 1]);
            assert!(d.uvarint().is_err());
        }
        // Eleven bytes, or a tenth byte above 1, overflow 64 bits.
        assert_eq!(uvarint(&[0xff; 11]), None);
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
        let mut d = Decbuf::new(&[0x03, 0x80, 0x01]);
        assert_eq!((d.varint().unwrap(), d.varint().unwrap()), (-2, 64));
    }

    #[test]
    fn decbuf_errors_instead_of_panicking() {
        let mut d = Decbuf::new(&[0, 1]);
        assert!(d.be32().is_err());
        assert_eq!(d.be16().unwrap(), 1);
        assert!(d.byte().is_err());
    }

    #[test]
    fn crc_is_castagnoli() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    /// The short-buffer and side-by-side paths agree with the crate at every length and
    /// alignment, with buffers of different lengths checked together.
    #[test]
    fn crc_paths_agree_with_the_crate() {
        let data: Vec<u8> = (0..2000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in (0..900).step_by(7).chain([0, 1, 7, 8, 9, 767, 768, 769]) {
            for off in 0..9 {
                let b = &data[off..off + len];
                let want = crc32c::crc32c(b);
                assert_eq!(crc32c(b), want, "len {len} at {off}");
                let c = &data[off + 3..off + 3 + len / 2];
                let [x, y, z] = crc32c_each([b, c, &data[..off]]);
                assert_eq!(
                    (x, y, z),
                    (want, crc32c::crc32c(c), crc32c::crc32c(&data[..off]))
                );
            }
        }
        assert_eq!(crc32c_each::<0>([]), [0u32; 0]);
        for n in 0..11 {
            let bufs: Vec<&[u8]> = (0..n)
                .map(|i| &data[i * 13..i * 13 + 100 + i * 37])
                .collect();
            let mut got = vec![0; n];
            crc32c_many(&bufs, &mut got);
            let want: Vec<u32> = bufs.iter().map(|b| crc32c::crc32c(b)).collect();
            assert_eq!(got, want, "{n} buffers");
        }
    }
}
