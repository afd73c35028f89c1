//! XOR float chunks (Gorilla encoding), bit-identical to Prometheus's.
//!
//! Layout:
//!
//! ```text
//! ┌──────────────────────┬──────────────────────────────────────────────┐
//! │ num samples (2B, BE) │ bit stream                                   │
//! └──────────────────────┴──────────────────────────────────────────────┘
//! sample 0: t as Go varint (whole bytes), v as 64 raw bits
//! sample 1: t - t0 as Go uvarint (whole bytes), v as XOR value
//! sample n: dod = (t_n - t_n-1) - (t_n-1 - t_n-2):
//!             0                        → '0'
//!             in [-8191, 8192]         → '10'   + 14 bits
//!             in [-65535, 65536]       → '110'  + 17 bits
//!             in [-524287, 524288]     → '1110' + 20 bits
//!             otherwise                → '1111' + 64 bits
//!           then v as XOR value
//! XOR value: x = bits(v) ^ bits(v_prev)
//!             x == 0                                       → '0'
//!             leading/trailing zeros fit the previous window → '10' + meaningful bits
//!             otherwise → '11' + leading (5 bits, capped at 31) + sigbits (6 bits, 64 as 0)
//!                         + meaningful bits
//! ```

use std::mem::MaybeUninit;

use super::bstream::BitWriter;
use super::ValueType;

/// Maximum samples a chunk can hold (the header is a u16).
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// An XOR chunk: the encoded bytes, header included.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct XorChunk {
    bytes: Vec<u8>,
}

impl XorChunk {
    /// An empty chunk (just the zero sample count).
    pub fn new() -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&[0, 0]);
        XorChunk { bytes }
    }

    /// Wraps encoded chunk bytes (header included) without checking them.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        XorChunk { bytes }
    }

    /// The encoded bytes, header included.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Consumes the chunk into its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Number of samples in the chunk.
    pub fn num_samples(&self) -> usize {
        num_samples(&self.bytes)
    }

    /// An iterator over the samples.
    pub fn iter(&self) -> XorIterator<'_> {
        XorIterator::new(&self.bytes)
    }

    /// An appender continuing this chunk (reads it through once to recover the encoder state).
    pub fn appender(self) -> Result<XorAppender, crate::Error> {
        let mut app = XorAppender {
            w: BitWriter::default(),
            num: 0,
            t: 0,
            v: 0.0,
            t_delta: 0,
            leading: 0xff,
            trailing: 0,
        };
        let n = self.num_samples();
        if n == 0 {
            app.w = BitWriter::from_bytes(self.bytes);
            return Ok(app);
        }
        let mut it = self.iter();
        let mut count = 0;
        while it.next() == ValueType::Float {
            count += 1;
        }
        if let Some(e) = it.err() {
            return Err(e);
        }
        if count != n {
            return Err(crate::Error::Encoding(format!(
                "chunk header says {n} samples, stream has {count}"
            )));
        }
        let bits_used = it.bits_consumed();
        let used_bytes = bits_used.div_ceil(8);
        let free = (used_bytes * 8 - bits_used) as u8;
        let st = it.s;
        let (t, v, t_delta) = (st.t, f64::from_bits(st.v), st.td);
        let (leading, trailing) = (st.lead as u8, (64 - st.lead - st.sig) as u8);
        let mut bytes = self.bytes;
        bytes.truncate(used_bytes);
        app.w = BitWriter::resume(bytes, free);
        app.num = n as u16;
        app.t = t;
        app.v = v;
        app.t_delta = t_delta;
        app.leading = leading;
        app.trailing = trailing;
        Ok(app)
    }
}

/// Sample count stored in the first two bytes of an XOR chunk.
pub fn num_samples(bytes: &[u8]) -> usize {
    if bytes.len() < 2 {
        0
    } else {
        u16::from_be_bytes([bytes[0], bytes[1]]) as usize
    }
}

/// Appends samples to an XOR chunk, keeping the encoder state between calls.
#[derive(Clone, Debug)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    t: i64,
    v: f64,
    t_delta: i64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `x` fits the signed `nbits` window of the timestamp encoding.
#[inline]
fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

impl XorAppender {
    /// An appender over a new empty chunk.
    pub fn new() -> Self {
        XorChunk::new().appender().expect("empty chunk")
    }

    /// Number of samples appended so far.
    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    /// Timestamp of the last sample.
    pub fn last_t(&self) -> i64 {
        self.t
    }

    /// Value of the last sample.
    pub fn last_v(&self) -> f64 {
        self.v
    }

    /// The encoded bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.w.bytes
    }

    /// Size of the encoded bytes so far.
    pub fn len_bytes(&self) -> usize {
        self.w.bytes.len()
    }

    /// Where a decoder stands after the last sample appended so far, compactly, relative to
    /// the chunk's first timestamp `min_time`; `None` before two samples or when a field does
    /// not fit the mark (see [`SeekMark`]).
    pub fn seek_mark(&self, min_time: i64) -> Option<SeekMark> {
        if self.num < 2 {
            return None;
        }
        // A window that was never set reads as the decoder's initial one.
        let (lead, sig) = match self.leading {
            0xff => (0, 64),
            l => (l, 64 - l - self.trailing),
        };
        let pos = (self.w.bytes.len() - 2) * 8 - usize::from(self.w.free_bits());
        Some(SeekMark {
            v: self.v.to_bits(),
            t: u32::try_from(self.t.checked_sub(min_time)?).ok()?,
            td: i32::try_from(self.t_delta).ok()?,
            pos: u16::try_from(pos).ok()?,
            num: std::num::NonZeroU8::new(u8::try_from(self.num).ok()?)?,
            lead,
            sig,
        })
    }

    /// Finishes the chunk.
    pub fn into_chunk(self) -> XorChunk {
        XorChunk {
            bytes: self.w.bytes,
        }
    }

    /// A copy of the chunk as it is now.
    pub fn chunk(&self) -> XorChunk {
        XorChunk {
            bytes: self.w.bytes.clone(),
        }
    }

    /// Appends a sample. The caller keeps timestamps increasing and the count under
    /// [`MAX_SAMPLES`].
    pub fn append(&mut self, t: i64, v: f64) {
        let t_delta;
        match self.num {
            0 => {
                let mut buf = Vec::with_capacity(10);
                crate::encoding::put_varint(&mut buf, t);
                self.w.bytes.extend_from_slice(&buf);
                self.w.write_bits(v.to_bits(), 64);
                t_delta = 0;
            }
            1 => {
                t_delta = t.wrapping_sub(self.t);
                let mut buf = Vec::with_capacity(10);
                crate::encoding::put_uvarint(&mut buf, t_delta as u64);
                for b in buf {
                    self.w.write_bits(b as u64, 8);
                }
                self.write_value(v);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t);
                let dod = t_delta.wrapping_sub(self.t_delta);
                if dod == 0 {
                    self.w.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64, 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.num += 1;
        self.w.bytes[0..2].copy_from_slice(&self.num.to_be_bytes());
    }

    #[inline]
    fn write_value(&mut self, v: f64) {
        let delta = v.to_bits() ^ self.v.to_bits();
        if delta == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let mut leading = delta.leading_zeros() as u8;
        let trailing = delta.trailing_zeros() as u8;
        if leading >= 32 {
            leading = 31;
        }
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            self.w.write_bits(
                delta >> self.trailing,
                64 - self.leading as u32 - self.trailing as u32,
            );
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.w.write_bit(true);
        self.w.write_bits(leading as u64, 5);
        let sigbits = 64 - leading as u32 - trailing as u32;
        self.w.write_bits(sigbits as u64, 6);
        self.w.write_bits(delta >> trailing, sigbits);
    }
}

/// Iterates the samples of an XOR chunk.
///
/// The decoder keeps only a bit position into the chunk body: every field is cut out of an
/// unaligned big-endian 8-byte load at that position (zero-filled past the end of the data),
/// so there is no bit window to refill and no length check per field. A sample whose fields
/// reach past the last bit of the data is a truncation error, found by comparing the position
/// with the data's length once after the timestamp and once after the value.
#[derive(Clone, Debug)]
pub struct XorIterator<'a> {
    /// The bit stream (the chunk without its 2-byte header).
    body: &'a [u8],
    /// Position, current sample, delta and value window.
    s: State,
    num_total: u16,
    num_read: u16,
    err: Option<String>,
}

/// The decoding state of an [`XorIterator`] without its borrowed bytes: taken with
/// [`XorIterator::cursor`], it resumes decoding over the same bytes with [`XorIterator::resume`]
/// instead of decoding the chunk again from its start.
#[derive(Clone, Copy, Debug)]
pub struct XorCursor {
    s: State,
    num_total: u16,
    num_read: u16,
}

/// A decoder's state after one sample of an open chunk, taken while appending
/// ([`XorAppender::seek_mark`]) so that a reader of the chunk can start decoding there instead
/// of at the chunk's first sample (see [`SeekMark::cursor`]). 24 bytes: the timestamp is kept
/// relative to the chunk's first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeekMark {
    v: u64,
    t: u32,
    td: i32,
    pos: u16,
    /// Samples up to and including the mark's (never 0, so `Option<SeekMark>` takes no more
    /// room).
    num: std::num::NonZeroU8,
    lead: u8,
    sig: u8,
}

impl SeekMark {
    /// Timestamp of the sample the mark stands at, for a chunk whose first sample is at
    /// `min_time`.
    pub fn t(&self, min_time: i64) -> i64 {
        min_time + i64::from(self.t)
    }

    /// The mark as a cursor over the chunk's bytes (header included) when they hold
    /// `num_total` samples: [`XorIterator::resume`] with it is at the mark's sample.
    pub fn cursor(&self, min_time: i64, num_total: u16) -> XorCursor {
        XorCursor {
            s: State {
                pos: usize::from(self.pos),
                t: self.t(min_time),
                v: self.v,
                td: i64::from(self.td),
                lead: u32::from(self.lead),
                sig: u32::from(self.sig),
            },
            num_total,
            num_read: u16::from(self.num.get()),
        }
    }
}

/// The eight bytes of `body` from `byte` on as a big-endian word, zero-filled past the end.
#[inline(always)]
fn load(body: &[u8], byte: usize) -> u64 {
    if let Some(w) = body.get(byte..).and_then(|s| s.first_chunk::<8>()) {
        return u64::from_be_bytes(*w);
    }
    // Within the last eight bytes: load those and shift out the bytes before `byte`.
    if let Some(w) = body.last_chunk::<8>() {
        let skip = byte + 8 - body.len();
        if skip < 8 {
            return u64::from_be_bytes(*w) << (8 * skip);
        }
    }
    load_tail(body, byte)
}

/// [`load`] past the end of the data or in data shorter than eight bytes.
#[cold]
#[inline(never)]
fn load_tail(body: &[u8], byte: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(rest) = body.get(byte..) {
        let n = rest.len().min(8);
        w[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(w)
}

/// The stream from bit `pos` on, left-aligned: at least the top 57 bits are the stream's
/// (zero past the end of the data).
#[inline(always)]
fn window(body: &[u8], pos: usize) -> u64 {
    load(body, pos >> 3) << (pos & 7)
}

/// The `n` (1..=64) bits of the stream at bit `pos`, zero past the end of the data.
#[inline(always)]
fn bits_at(body: &[u8], pos: usize, n: u32) -> u64 {
    bits_from(|p| window(body, p), pos, n)
}

/// The `n` (1..=64) bits at bit `pos` of a stream read through `window` (its 64 bits from a
/// bit position on, of which at least the top 57 are exact).
#[inline(always)]
fn bits_from(window: impl Fn(usize) -> u64, pos: usize, n: u32) -> u64 {
    debug_assert!((1..=64).contains(&n));
    if n <= 57 {
        window(pos) >> (64 - n)
    } else {
        let hi = window(pos) >> 32;
        let lo = window(pos + 32) >> (96 - n);
        (hi << (n - 32)) | lo
    }
}

/// The decoder's state: bit position, last sample, last delta, value window.
#[derive(Clone, Copy, Debug)]
struct State {
    /// Bits of the stream consumed so far.
    pos: usize,
    t: i64,
    /// Bits of the last value.
    v: u64,
    td: i64,
    /// Leading zeros of the current value window.
    lead: u32,
    /// Meaningful bits of the current value window (1..=64).
    sig: u32,
}

/// Reads a Go varint stored as whole bytes (8-bit fields) at the state's position.
#[inline(never)]
fn read_byte_varint(body: &[u8], nbits: usize, s: &mut State, signed: bool) -> Option<i64> {
    if s.pos.is_multiple_of(8) {
        // On a byte boundary (always, in a well-formed chunk: the two varints are the first
        // fields of samples 0 and 1, after whole bytes): decoded from the bytes in place.
        let bytes = body.get(s.pos / 8..(nbits / 8).min(body.len()))?;
        let (x, n) = if signed {
            crate::encoding::varint(bytes)?
        } else {
            crate::encoding::uvarint(bytes).map(|(x, n)| (x as i64, n))?
        };
        s.pos += n * 8;
        return Some(x);
    }
    let mut buf = [0u8; 10];
    for i in 0..10 {
        if s.pos + 8 > nbits {
            return None;
        }
        let b = bits_at(body, s.pos, 8) as u8;
        s.pos += 8;
        buf[i] = b;
        if b < 0x80 {
            return if signed {
                crate::encoding::varint(&buf[..=i]).map(|x| x.0)
            } else {
                crate::encoding::uvarint(&buf[..=i]).map(|x| x.0 as i64)
            };
        }
    }
    None
}

/// Decodes sample 0 (`first == true`: varint timestamp, raw value) or sample 1 (uvarint delta,
/// XOR value); `Err` names the field that is truncated or corrupt.
#[inline(never)]
fn decode_head(body: &[u8], nbits: usize, s: &mut State, first: bool) -> Result<(), &'static str> {
    if first {
        s.t = read_byte_varint(body, nbits, s, true).ok_or("first timestamp")?;
        if s.pos + 64 > nbits {
            return Err("first value");
        }
        s.v = bits_at(body, s.pos, 64);
        s.pos += 64;
        Ok(())
    } else {
        let d = read_byte_varint(body, nbits, s, false).ok_or("timestamp delta")?;
        s.td = d;
        s.t = s.t.wrapping_add(d);
        decode_value(body, nbits, s)
    }
}

/// The delta of delta in the '10', '110' or '1110' form (`ones`, 1 to 3, leading ones) at the
/// top of the window `w`, and how many bits it takes.
#[inline(always)]
fn short_dod(w: u64, ones: u32) -> (i64, usize) {
    let size = 11 + 3 * ones;
    let bits = (w << (ones + 1)) >> (64 - size);
    let dod = if bits > 1u64 << (size - 1) {
        bits as i64 - (1i64 << size)
    } else {
        bits as i64
    };
    (dod, (ones + 1 + size) as usize)
}

/// Decodes one timestamp after the second (delta of delta with prefix '0', '10' + 14 bits,
/// '110' + 17, '1110' + 20, '1111' + 64).
#[inline(always)]
fn decode_timestamp(body: &[u8], nbits: usize, s: &mut State) -> Result<(), &'static str> {
    let w = window(body, s.pos);
    let dod: i64 = if (w as i64) >= 0 {
        s.pos += 1;
        0
    } else {
        let ones = (!w).leading_zeros();
        if ones <= 3 {
            // At most 4 + 20 bits: all in the window.
            let (dod, used) = short_dod(w, ones);
            s.pos += used;
            dod
        } else {
            let bits = bits_at(body, s.pos + 4, 64);
            s.pos += 68;
            bits as i64
        }
    };
    if s.pos > nbits {
        return Err("timestamp");
    }
    s.td = s.td.wrapping_add(dod);
    s.t = s.t.wrapping_add(s.td);
    Ok(())
}

/// Decodes one XOR value: '0' unchanged, '10' + bits in the previous window, '11' + 5 bits
/// leading zeros + 6 bits meaningful bits (0 meaning 64) + the bits.
#[inline(always)]
fn decode_value(body: &[u8], nbits: usize, s: &mut State) -> Result<(), &'static str> {
    decode_value_in(body, nbits, s, window(body, s.pos), 57)
}

/// Decodes one timestamp and one value after the second sample. A '0' timestamp leaves the
/// value in the rest of the same window, without a second load.
#[inline(always)]
fn decode_sample(body: &[u8], nbits: usize, s: &mut State) -> Result<(), &'static str> {
    let w = window(body, s.pos);
    if (w as i64) >= 0 {
        s.pos += 1;
        if s.pos > nbits {
            return Err("timestamp");
        }
        s.t = s.t.wrapping_add(s.td);
        decode_value_in(body, nbits, s, w << 1, 56)
    } else {
        decode_timestamp(body, nbits, s)?;
        decode_value(body, nbits, s)
    }
}

/// The value window of a changed value whose control bits start `w` (its first bit set):
/// `(leading zeros, meaningful bits, header bits)`, the window being the previous one
/// (`10`, 2 header bits) or a new one (`11` + 5 + 6 bits). Both candidates are computed and one
/// picked, without a branch on the (unpredictable) second control bit.
#[inline(always)]
fn value_window(w: u64, s: &State) -> (u32, u32, u32) {
    let new = (w >> 62) & 1 != 0;
    let nl = ((w >> 57) & 31) as u32;
    let ns = ((((w >> 51) & 63) as u32).wrapping_sub(1) & 63) + 1;
    let lead = if new { nl } else { s.lead };
    let sig = if new { ns } else { s.sig };
    let hdr = if new { 13 } else { 2 };
    (lead, sig, hdr)
}

/// [`decode_value`] from `w`, the stream at the state's position, of which the top `avail`
/// bits are the stream's.
#[inline(always)]
fn decode_value_in(
    body: &[u8],
    nbits: usize,
    s: &mut State,
    w: u64,
    avail: u32,
) -> Result<(), &'static str> {
    if (w as i64) >= 0 {
        s.pos += 1;
    } else {
        let (lead, sig, hdr) = value_window(w, s);
        if lead + sig > 64 {
            return Err("value");
        }
        let payload = if hdr + sig <= avail {
            (w << hdr) >> (64 - sig)
        } else {
            bits_at(body, s.pos + hdr as usize, sig)
        };
        s.v ^= payload << (64 - lead - sig);
        s.lead = lead;
        s.sig = sig;
        s.pos += (hdr + sig) as usize;
    }
    if s.pos > nbits {
        return Err("value");
    }
    Ok(())
}

impl<'a> XorIterator<'a> {
    /// An iterator over encoded chunk bytes (header included).
    pub fn new(bytes: &'a [u8]) -> Self {
        let body = bytes.get(2..).unwrap_or(&[]);
        XorIterator {
            body,
            s: start_state(),
            num_total: num_samples(bytes) as u16,
            num_read: 0,
            err: None,
        }
    }

    /// The iterator's state (its current sample included), or `None` after a decoding error.
    pub fn cursor(&self) -> Option<XorCursor> {
        if self.err.is_some() {
            return None;
        }
        Some(XorCursor {
            s: self.s,
            num_total: self.num_total,
            num_read: self.num_read,
        })
    }

    /// An iterator over `bytes` (the same chunk bytes `c` was taken from, header included) in
    /// the state of `c`: [`XorIterator::at`] is the sample it was at, and decoding goes on
    /// from there.
    pub fn resume(bytes: &'a [u8], c: &XorCursor) -> Self {
        let body = bytes.get(2..).unwrap_or(&[]);
        XorIterator {
            body,
            s: c.s,
            num_total: c.num_total,
            num_read: c.num_read,
            err: None,
        }
    }

    /// The current sample.
    #[inline]
    pub fn at(&self) -> (i64, f64) {
        (self.s.t, f64::from_bits(self.s.v))
    }

    /// The current timestamp.
    #[inline]
    pub fn at_t(&self) -> i64 {
        self.s.t
    }

    /// The decoding error that stopped the iterator, if any.
    pub fn err(&self) -> Option<crate::Error> {
        self.err.as_ref().map(|m| crate::Error::Encoding(m.clone()))
    }

    /// Bits of the stream consumed so far, plus the 16 header bits.
    fn bits_consumed(&self) -> usize {
        16 + self.s.pos
    }

    fn fail(&mut self, what: &str) -> ValueType {
        self.err = Some(format!(
            "XOR chunk truncated reading {what} of sample {}",
            self.num_read
        ));
        self.num_read = self.num_total;
        ValueType::None
    }

    /// Advances to the next sample.
    #[inline]
    #[allow(clippy::should_implement_trait)] // mirrors `SampleIter::next`, returns a ValueType
    pub fn next(&mut self) -> ValueType {
        if self.num_read >= self.num_total {
            return ValueType::None;
        }
        let nbits = self.body.len() * 8;
        let res = if self.num_read >= 2 {
            decode_sample(self.body, nbits, &mut self.s)
        } else {
            decode_head(self.body, nbits, &mut self.s, self.num_read == 0)
        };
        match res {
            Ok(()) => {
                self.num_read += 1;
                ValueType::Float
            }
            Err(what) => self.fail(what),
        }
    }

    /// Appends the remaining samples with `lo <= t <= hi` to `out`, stopping at the first one
    /// after `hi`; says whether it stopped there (rather than at the end of the chunk or at a
    /// decoding error, see [`XorIterator::err`]). One tight loop, no call per sample.
    pub fn collect_into(&mut self, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>) -> bool {
        out.reserve(usize::from(self.num_total.saturating_sub(self.num_read)));
        let mut past = false;
        self.run(|t, v| {
            if t > hi {
                past = true;
                return false;
            }
            if t >= lo {
                out.push((t, v));
            }
            true
        });
        past
    }

    /// Decodes the remaining samples, handing each to `sink` until it returns false (the
    /// iterator then stays at that sample), the chunk ends, or a decoding error stops it.
    ///
    /// The same decoding as [`XorIterator::next`], as one loop over a local copy of the state
    /// (kept in registers).
    #[inline(always)]
    fn run<F: FnMut(i64, f64) -> bool>(&mut self, mut sink: F) {
        while self.num_read < 2 {
            if self.next() == ValueType::None {
                return;
            }
            if !sink(self.s.t, f64::from_bits(self.s.v)) {
                return;
            }
        }
        let body = self.body;
        let nbits = body.len() * 8;
        let mut s = self.s;
        let (total, mut n) = (self.num_total, self.num_read);
        let mut failed: Option<&'static str> = None;
        while n < total {
            if let Err(what) = decode_sample(body, nbits, &mut s) {
                failed = Some(what);
                break;
            }
            n += 1;
            if !sink(s.t, f64::from_bits(s.v)) {
                break;
            }
        }
        self.s = s;
        self.num_read = n;
        if let Some(what) = failed {
            self.fail(what);
        }
    }

    /// Advances to the first sample at or after `t` (staying put if already there).
    pub fn seek(&mut self, t: i64) -> ValueType {
        if self.num_read > 0 && self.s.t >= t {
            return ValueType::Float;
        }
        let mut found = false;
        self.run(|ts, _| {
            found = ts >= t;
            !found
        });
        if found {
            ValueType::Float
        } else {
            ValueType::None
        }
    }
}

/// The error of [`decode_chunks_into`]: which chunk of the list failed to decode, and how.
#[derive(Debug)]
pub struct ChunkDecodeError {
    /// Index of the failing chunk in the list given to [`decode_chunks_into`].
    pub chunk: usize,
    /// The decoding error, as [`XorIterator::err`] gives it.
    pub err: crate::Error,
}

/// Bytes after a chunk body that the batch decoder may load: zeros after the bodies in
/// [`decode_chunks_into`]'s scratch copy, and what a [`TailedChunk`] decoded in place needs
/// after it, so that every 8-byte load starting inside the data (a field's load, or a wide
/// field's second load at most 8 bytes further) lies wholly inside the buffer.
pub const PAD: usize = 32;

/// Appends every sample of the given whole XOR chunks (header included), chunk after chunk,
/// to `out`: the samples [`XorIterator::collect_into`] gives over each chunk in turn.
///
/// The chunk bodies are first copied into one zero-padded buffer (or decoded where they lie,
/// see [`decode_tailed_into`]), so the decoding loop loads
/// eight bytes anywhere without a length check and compares its position with the chunk's
/// end once per chunk instead of after every field. Output is sized once from the chunk
/// headers and written in place, not pushed sample by sample.
///
/// (Decoding two or four chunks interleaved in one loop, to overlap their dependency chains,
/// was measured on real block chunks: two gave nothing over this loop, four were slower.)
///
/// On a decoding error `out` holds the samples before it, as sequential decoding leaves it:
/// all samples of the chunks before the failing one and those of the failing chunk before the
/// bad sample; the error names the chunk. (The fast loop only notices that a chunk failed; it
/// is then decoded again through [`XorIterator`] for the exact error.)
pub fn decode_chunks_into(
    chunks: &[&[u8]],
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkDecodeError> {
    let tailed: Vec<TailedChunk> = chunks
        .iter()
        .map(|c| TailedChunk::new(c, c.len()))
        .collect();
    decode_tailed_into(&tailed, out)
}

/// An XOR chunk (header included) at the start of `ext`, the buffer it is stored in from the
/// chunk on: `ext[..len]` is the chunk, the rest whatever follows it there (the next chunks of
/// a file or of a buffer of chunks read together, a checksum, padding). See
/// [`decode_tailed_into`].
#[derive(Clone, Copy, Debug)]
pub struct TailedChunk<'a> {
    ext: &'a [u8],
    len: usize,
}

impl<'a> TailedChunk<'a> {
    /// The chunk `ext[..len]` followed by the rest of `ext` (`len` is cut to `ext`'s length).
    pub fn new(ext: &'a [u8], len: usize) -> Self {
        TailedChunk {
            ext,
            len: len.min(ext.len()),
        }
    }

    /// The chunk's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        &self.ext[..self.len]
    }

    /// The chunk's body (after the header).
    fn body(&self) -> &'a [u8] {
        self.bytes().get(2..).unwrap_or(&[])
    }

    /// Whether enough bytes follow the chunk for it to be decoded where it lies.
    fn in_place(&self) -> bool {
        self.ext.len() - self.len >= PAD
    }
}

/// [`decode_chunks_into`] over chunks as they lie in longer buffers. A chunk followed by at
/// least [`PAD`] bytes where it lies is decoded there, without a copy: every load starting
/// inside its data lies inside the buffer, and the bytes after the chunk only reach the bits
/// of a field that runs past the chunk's end, which the end check rejects either way. The
/// other chunks are decoded from the padded copy.
pub fn decode_tailed_into(
    chunks: &[TailedChunk<'_>],
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkDecodeError> {
    if chunks.is_empty() {
        return Ok(());
    }
    PADDED.with_borrow_mut(|buf| {
        buf.clear();
        for c in chunks.iter().filter(|c| !c.in_place()) {
            buf.extend_from_slice(c.body());
        }
        if !buf.is_empty() {
            buf.resize(buf.len() + PAD, 0);
        }
        let res = decode_lanes(chunks, buf, out);
        if buf.capacity() > PADDED_KEEP {
            *buf = Vec::new();
        }
        res
    })
}

/// Appends the samples of the whole XOR chunk `chunk` with `lo <= t <= hi` to `out`, as
/// [`XorIterator::collect_into`] over a new iterator does (and with the same result: whether a
/// sample after `hi` was seen, or the decoding error, after which `out` holds the in-range
/// samples before the bad one). The chunk is decoded whole by [`decode_tailed_into`] (where it
/// lies, when it can) and cut after: XOR samples can only be read from the chunk's start, and
/// the batch decoder reads even the samples after `hi` faster than the step-by-step one stops
/// before them.
pub fn decode_chunk_cut(
    chunk: TailedChunk<'_>,
    lo: i64,
    hi: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<bool, crate::Error> {
    let from = out.len();
    let res = decode_tailed_into(&[chunk], out);
    let got = &out[from..];
    // Whether a sample after `hi` was seen, after which sequential decoding stops.
    let cut = if got.windows(2).fold(true, |ok, w| ok & (w[0].0 <= w[1].0)) {
        // In time order (checked without branching): both edges found by bisection, the
        // samples before `lo` dropped with one move of the rest over them.
        let end = got.partition_point(|s| s.0 <= hi);
        let first = got[..end].partition_point(|s| s.0 < lo);
        let cut = end < got.len();
        out.truncate(from + end);
        out.drain(from..from + first);
        cut
    } else {
        // A damaged chunk, whose times may go back: the first sample after `hi` ends it,
        // and each sample before is kept or dropped in turn.
        let end = got.iter().position(|s| s.0 > hi);
        out.truncate(from + end.unwrap_or(got.len()));
        let mut kept = from;
        for i in from..out.len() {
            out[kept] = out[i];
            kept += usize::from(out[i].0 >= lo);
        }
        out.truncate(kept);
        end.is_some()
    };
    match res {
        // Sequential decoding stops at the first sample after `hi`, before any later error.
        _ if cut => Ok(true),
        Ok(()) => Ok(false),
        Err(e) => Err(e.err),
    }
}

/// [`decode_chunk_cut`] of a chunk whose first and last sample times are `span`, decoding only
/// as far as the samples up to `hi` probably reach when the chunk goes on past it: its
/// samples are taken to be about evenly spread, and a few more than that share are decoded.
/// When those do not pass `hi` (or do not decode, or go back in time), the whole chunk is
/// decoded after all, so the result is always [`decode_chunk_cut`]'s. An instant query over a
/// block reads a few minutes of samples from chunks of up to two hours.
pub fn decode_chunk_cut_spanned(
    chunk: TailedChunk<'_>,
    span: (i64, i64),
    lo: i64,
    hi: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<bool, crate::Error> {
    let n = num_samples(chunk.bytes());
    let (first, last) = span;
    if n > PREFIX_MIN_SAMPLES && first <= hi && hi < last {
        let share = (hi - first) as i128 * (n as i128 - 1) / (last - first) as i128;
        let k = (share as usize + 2 + n / 32).min(n);
        let from = out.len();
        if k < n && decode_prefix_into(chunk, k, out) {
            let got = &out[from..];
            let ordered = got.windows(2).fold(true, |ok, w| ok & (w[0].0 <= w[1].0));
            if ordered && got.last().is_some_and(|s| s.0 > hi) {
                let end = got.partition_point(|s| s.0 <= hi);
                let start = got[..end].partition_point(|s| s.0 < lo);
                out.truncate(from + end);
                out.drain(from..from + start);
                return Ok(true);
            }
        }
        out.truncate(from);
    }
    decode_chunk_cut(chunk, lo, hi, out)
}

/// Fewest samples of a chunk for [`decode_chunk_cut_spanned`] to decode only a part of it.
const PREFIX_MIN_SAMPLES: usize = 160;

/// Appends the first `k` samples (at most the chunk's) of the whole XOR chunk `chunk` to
/// `out`; false, with `out` as it was, when they do not decode.
fn decode_prefix_into(chunk: TailedChunk<'_>, k: usize, out: &mut Vec<(i64, f64)>) -> bool {
    let n = num_samples(chunk.bytes()).min(k);
    let base = out.len();
    out.reserve(n);
    let bits = chunk.body().len() * 8;
    let decode = |buf: &[u8], out: &mut Vec<(i64, f64)>| {
        let mut l = Lane {
            s: start_state(),
            end: bits,
        };
        let ok = decode_lane(buf, &mut l, &mut out.spare_capacity_mut()[..n]);
        if ok {
            // SAFETY: a successful lane writes each of its `n` slots.
            unsafe { out.set_len(base + n) };
        }
        ok
    };
    if chunk.in_place() {
        return decode(&chunk.ext[2..], out);
    }
    PADDED.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(chunk.body());
        buf.resize(buf.len() + PAD, 0);
        decode(buf, out)
    })
}

/// Most bytes [`PADDED`] keeps between calls; a longer run's copy is freed after it.
const PADDED_KEEP: usize = 1 << 20;

thread_local! {
    /// [`decode_chunks_into`]'s padded copy of the chunk bodies, kept per thread so a query
    /// decoding thousands of series does not allocate and fault in a buffer for each.
    static PADDED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes `chunks` into `out`: a chunk followed by [`PAD`] bytes where it lies from there
/// ([`TailedChunk::in_place`]), the others from `padded`, which holds their bodies one after
/// another, in order, with `PAD` zero bytes after the last.
///
/// On x86-64 CPUs with BMI2 and LZCNT the loop is compiled for them: the bit fields' variable
/// shifts become `shlx`/`shrx` and the leading-ones count `lzcnt` instead of `bsr`.
fn decode_lanes(
    chunks: &[TailedChunk<'_>],
    padded: &[u8],
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkDecodeError> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("lzcnt")
        {
            // SAFETY: the CPU has BMI2 and LZCNT, checked just above.
            return unsafe { decode_lanes_bmi2(chunks, padded, out) };
        }
    }
    decode_lanes_generic(chunks, padded, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi1,bmi2,lzcnt")]
unsafe fn decode_lanes_bmi2(
    chunks: &[TailedChunk<'_>],
    padded: &[u8],
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkDecodeError> {
    decode_lanes_generic(chunks, padded, out)
}

#[inline(always)]
fn decode_lanes_generic(
    chunks: &[TailedChunk<'_>],
    padded: &[u8],
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkDecodeError> {
    let base = out.len();
    let total: usize = chunks.iter().map(|c| num_samples(c.bytes())).sum();
    // Written in place of the spare capacity, not zeroed first.
    out.reserve(total);
    let (mut done, mut copied) = (0usize, 0usize);
    for (i, c) in chunks.iter().enumerate() {
        let bits = c.body().len() * 8;
        let (buf, bit) = if c.in_place() {
            (&c.ext[2..], 0)
        } else {
            copied += bits;
            (padded, copied - bits)
        };
        let mut l = Lane {
            s: State {
                pos: bit,
                ..start_state()
            },
            end: bit + bits,
        };
        let n = num_samples(c.bytes());
        if !decode_lane(buf, &mut l, &mut out.spare_capacity_mut()[done..done + n]) {
            // SAFETY: the lanes before this one wrote every one of their `done` slots.
            unsafe { out.set_len(base + done) };
            return decode_stepwise(&chunks[i..], i, out);
        }
        done += n;
    }
    // SAFETY: every lane succeeded, and a successful lane writes each of its slots.
    unsafe { out.set_len(base + total) };
    Ok(())
}

/// [`decode_tailed_into`] one chunk at a time through [`XorIterator::collect_into`]; `first`
/// is the index of `chunks[0]` in the caller's list.
#[cold]
#[inline(never)]
fn decode_stepwise(
    chunks: &[TailedChunk<'_>],
    first: usize,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkDecodeError> {
    for (k, c) in chunks.iter().enumerate() {
        let mut it = XorIterator::new(c.bytes());
        it.collect_into(i64::MIN, i64::MAX, out);
        if let Some(err) = it.err() {
            return Err(ChunkDecodeError {
                chunk: first + k,
                err,
            });
        }
    }
    Ok(())
}

/// A decoder state at the start of a chunk body.
#[inline(always)]
fn start_state() -> State {
    State {
        pos: 0,
        t: 0,
        v: 0,
        td: 0,
        lead: 0,
        sig: 64,
    }
}

/// One chunk's decoder in [`decode_chunks_into`]'s padded buffer: its state, with positions
/// counted from the buffer's start, and the bit where its body ends.
#[derive(Clone, Copy)]
struct Lane {
    s: State,
    end: usize,
}

/// The eight bytes of the padded buffer from `byte` on as a big-endian word; zero if they
/// would pass its end, which happens only to a load starting past the data (see [`PAD`]),
/// that is to a lane that has already run off its chunk.
#[inline(always)]
fn load_padded(buf: &[u8], byte: usize) -> u64 {
    match buf.get(byte..byte.wrapping_add(8)) {
        Some(w) => u64::from_be_bytes(w.try_into().unwrap_or([0; 8])),
        None => 0,
    }
}

/// The padded buffer from bit `pos` on, left-aligned (57 bits at least).
#[inline(always)]
fn window_padded(buf: &[u8], pos: usize) -> u64 {
    load_padded(buf, pos >> 3) << (pos & 7)
}

/// The shifts a '10' value (same window as the last one) needs, worked out once per window by
/// [`Shifts::of`] instead of at every sample.
#[derive(Clone, Copy)]
struct Shifts {
    /// `64 - sig`: moves the window's meaningful bits from the top of a word to its bottom.
    payload: u32,
    /// `64 - lead - sig`: moves them from the bottom to their place in the value.
    place: u32,
    /// `2 + sig`: the bits a '10' value takes.
    advance: usize,
}

impl Shifts {
    /// The shifts of `s`'s value window.
    #[inline(always)]
    fn of(s: &State) -> Shifts {
        Shifts {
            payload: 64u32.wrapping_sub(s.sig),
            place: 64u32.wrapping_sub(s.lead + s.sig),
            advance: 2 + s.sig as usize,
        }
    }
}

/// Decodes one sample after the second from the padded buffer without checking positions:
/// the caller compares the position with the lane's end once the lane is done (positions only
/// grow, and past the buffer's end loads give zeros, so a lane that ran off its data stays
/// off it). A corrupt value window (leading zeros + meaningful bits over 64) moves the
/// position far past any end. `k` holds the shifts of the state's value window and is
/// updated with it.
#[inline(always)]
fn fast_sample(buf: &[u8], s: &mut State, k: &mut Shifts) {
    let w = window_padded(buf, s.pos);
    if (w as i64) >= 0 {
        s.pos += 1;
        s.t = s.t.wrapping_add(s.td);
        // The bits after a '0' timestamp: 56 of them are the stream's.
        return fast_value::<56>(buf, s, k, w << 1);
    }
    let ones = (!w).leading_zeros();
    let dod = if ones <= 3 {
        let (dod, used) = short_dod(w, ones);
        s.pos += used;
        dod
    } else {
        let hi = window_padded(buf, s.pos + 4) >> 32;
        let lo = window_padded(buf, s.pos + 36) >> 32;
        s.pos += 68;
        ((hi << 32) | lo) as i64
    };
    s.td = s.td.wrapping_add(dod);
    s.t = s.t.wrapping_add(s.td);
    fast_value::<57>(buf, s, k, window_padded(buf, s.pos));
}

/// The value part of [`fast_sample`]: `wv` holds the stream from the value on, its top
/// `AVAIL` bits being the stream's.
#[inline(always)]
fn fast_value<const AVAIL: u32>(buf: &[u8], s: &mut State, k: &mut Shifts, wv: u64) {
    if (wv as i64) >= 0 {
        s.pos += 1;
        return;
    }
    // '10' keeps the window: the common case, with the shifts ready.
    if wv & (1 << 62) == 0 && k.advance <= AVAIL as usize {
        s.v ^= ((wv << 2) >> k.payload).wrapping_shl(k.place);
        s.pos += k.advance;
        return;
    }
    // '11' reads a new window, the only place one can be corrupt (leading zeros + meaningful
    // bits over 64): the position then moves far past any end.
    let (hdr, sig) = if wv & (1 << 62) == 0 {
        (2, s.sig)
    } else {
        let (lead, sig, _) = value_window(wv, s);
        s.pos += usize::from(lead + sig > 64) << 40;
        s.lead = lead;
        s.sig = sig;
        *k = Shifts::of(s);
        (13, sig)
    };
    let payload = if hdr + sig <= AVAIL {
        (wv << hdr) >> (64 - sig)
    } else {
        bits_from(|p| window_padded(buf, p), s.pos + hdr as usize, sig)
    };
    s.v ^= payload.wrapping_shl(64u32.wrapping_sub(s.lead + sig));
    s.pos += (hdr + sig) as usize;
}

/// Decodes the first `out.len()` (at most 2) samples of a lane into `out`; false on an error.
#[inline(always)]
fn lane_first_two(buf: &[u8], l: &mut Lane, out: &mut [MaybeUninit<(i64, f64)>]) -> bool {
    for (k, o) in out.iter_mut().take(2).enumerate() {
        if decode_head(buf, l.end, &mut l.s, k == 0).is_err() {
            return false;
        }
        o.write((l.s.t, f64::from_bits(l.s.v)));
    }
    true
}

/// Decodes a lane's samples after the second into `out` (one slot per sample); false on an
/// error.
#[inline(always)]
fn lane_rest(buf: &[u8], l: &mut Lane, out: &mut [MaybeUninit<(i64, f64)>]) -> bool {
    let mut s = l.s;
    let mut k = Shifts::of(&s);
    for o in out.iter_mut() {
        fast_sample(buf, &mut s, &mut k);
        o.write((s.t, f64::from_bits(s.v)));
    }
    l.s = s;
    s.pos <= l.end
}

/// Decodes all `out.len()` samples of one lane into `out`; false on an error.
#[inline(always)]
fn decode_lane(buf: &[u8], l: &mut Lane, out: &mut [MaybeUninit<(i64, f64)>]) -> bool {
    if !lane_first_two(buf, l, out) {
        return false;
    }
    let rest = out.get_mut(2..).unwrap_or(&mut []);
    repeated_tail(buf, l, rest) || lane_rest(buf, l, rest)
}

/// Decodes a chunk's samples after the second into `out` when every one repeats the last
/// interval and value (a constant series scraped at a steady interval, like `up`): the rest of
/// the body is then two zero bits per sample (a '0' timestamp, a '0' value) and less than a
/// byte of padding. False, with nothing decoded, for any other chunk; a chunk whose body is
/// that short but not all zeros goes to [`lane_rest`], which checks it sample by sample.
#[inline(always)]
fn repeated_tail(buf: &[u8], l: &mut Lane, out: &mut [MaybeUninit<(i64, f64)>]) -> bool {
    let bits = 2 * out.len();
    let left = l.end.saturating_sub(l.s.pos);
    if out.is_empty() || left < bits || left - bits >= 8 {
        return false;
    }
    // A window holds 57 bits of the stream; check 56 at a time.
    let mut at = l.s.pos;
    while at < l.s.pos + bits {
        let take = (l.s.pos + bits - at).min(56) as u32;
        if window_padded(buf, at) >> (64 - take) != 0 {
            return false;
        }
        at += take as usize;
    }
    let v = f64::from_bits(l.s.v);
    let (mut t, td) = (l.s.t, l.s.td);
    for o in out.iter_mut() {
        t = t.wrapping_add(td);
        o.write((t, v));
    }
    l.s.t = t;
    l.s.pos += bits;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 generator from `seed` (non-zero), for reproducible random test data.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn roundtrip(samples: &[(i64, f64)]) {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        let c = a.into_chunk();
        assert_eq!(c.num_samples(), samples.len());
        let mut it = c.iter();
        for &(t, v) in samples {
            assert_eq!(it.next(), ValueType::Float);
            let (gt, gv) = it.at();
            assert_eq!(gt, t);
            assert_eq!(gv.to_bits(), v.to_bits());
        }
        assert_eq!(it.next(), ValueType::None);
        assert!(it.err().is_none());
    }

    #[test]
    fn encodes_and_decodes() {
        roundtrip(&[]);
        roundtrip(&[(1000, 1.0)]);
        let mut s = Vec::new();
        let mut t = 1_700_000_000_000i64;
        let mut v = 0.0;
        for i in 0..120 {
            t += 15_000 + [0, 1, -1, 9000, -9000, 70_000, 600_000, 10_000_000][i % 8];
            v += (i as f64).sin() * 1000.0;
            s.push((t, if i % 17 == 0 { f64::NAN } else { v }));
        }
        roundtrip(&s);
        roundtrip(&[
            (-5, f64::INFINITY),
            (i64::MAX / 4, f64::NEG_INFINITY),
            (i64::MAX / 2, 0.0),
        ]);
    }

    #[test]
    fn known_bytes() {
        // Two samples at t=1000,v=1 and t=2000,v=1: header 0x0002, varint(1000)=d0 0f,
        // float bits of 1.0, uvarint(1000)=e8 07, then one '0' bit for the unchanged value.
        let mut a = XorAppender::new();
        a.append(1000, 1.0);
        a.append(2000, 1.0);
        assert_eq!(
            a.bytes(),
            &[0, 2, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x00]
        );
    }

    #[test]
    fn appender_resumes_identically() {
        let mut full = XorAppender::new();
        let mut part = XorAppender::new();
        for i in 0..60 {
            full.append(i * 1000 + (i % 3), i as f64 * 1.5);
            part.append(i * 1000 + (i % 3), i as f64 * 1.5);
        }
        let mut resumed = part.into_chunk().appender().unwrap();
        for i in 60..120 {
            full.append(i * 1000 + (i % 3), i as f64 * 0.25);
            resumed.append(i * 1000 + (i % 3), i as f64 * 0.25);
        }
        assert_eq!(full.bytes(), resumed.bytes());
    }

    #[test]
    fn seek_marks_resume_decoding_where_they_were_taken() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        let cases: Vec<Vec<(i64, f64)>> = vec![
            // Constant values (the window is never set) at a steady interval.
            (0..130).map(|i| (5_000 + i * 15_000, 1.0)).collect(),
            // Jittered timestamps, random values, some repeats and big jumps.
            (0..200)
                .map(|i| {
                    let t = 1_700_000_000_000 + i * 15_000 + (rnd() % 50) as i64;
                    let v = match rnd() % 4 {
                        0 => 42.0,
                        1 => f64::from_bits(rnd() >> 2),
                        _ => (rnd() % 1000) as f64 * 0.5,
                    };
                    (t, v)
                })
                .collect(),
        ];
        for samples in cases {
            let min_time = samples[0].0;
            let mut app = XorAppender::new();
            let mut marks = Vec::new();
            for &(t, v) in &samples {
                app.append(t, v);
                marks.push(app.seek_mark(min_time));
            }
            let bytes = app.bytes().to_vec();
            let total = samples.len() as u16;
            assert!(marks[0].is_none(), "no mark before two samples");
            for (i, m) in marks.iter().enumerate().skip(1) {
                let m = m.expect("fits a mark");
                assert_eq!(m.t(min_time), samples[i].0);
                let mut it = XorIterator::resume(&bytes, &m.cursor(min_time, total));
                assert_eq!(it.at().0, samples[i].0);
                assert_eq!(it.at().1.to_bits(), samples[i].1.to_bits());
                for &(t, v) in &samples[i + 1..] {
                    assert_eq!(it.next(), ValueType::Float, "after mark {i}");
                    assert_eq!((it.at().0, it.at().1.to_bits()), (t, v.to_bits()));
                }
                assert_eq!(it.next(), ValueType::None);
                assert!(it.err().is_none());
            }
        }
    }

    #[test]
    fn cursor_resumes_where_it_was() {
        let mut app = XorChunk::new().appender().expect("empty chunk");
        let samples: Vec<(i64, f64)> = (0..150)
            .map(|i| (1000 + i * 15_000 + i % 7, (i * i) as f64 / 3.0))
            .collect();
        for &(t, v) in &samples {
            app.append(t, v);
        }
        let bytes = app.bytes().to_vec();
        for k in [1usize, 2, 3, 64, 149, 150] {
            let mut it = XorIterator::new(&bytes);
            for _ in 0..k {
                assert_eq!(it.next(), ValueType::Float);
            }
            let c = it.cursor().expect("no error");
            let mut r = XorIterator::resume(&bytes, &c);
            assert_eq!(r.at(), samples[k - 1]);
            let mut rest = Vec::new();
            r.collect_into(i64::MIN, i64::MAX, &mut rest);
            assert_eq!(rest, samples[k..].to_vec(), "resumed after {k}");
        }
    }

    /// Samples with every timestamp width and every value shape, from a fixed seed.
    fn mixed_samples(seed: u64, n: usize) -> Vec<(i64, f64)> {
        let mut x = seed | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = 1_700_000_000_000i64;
        let mut v = 1.0f64;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let k = rnd();
            t += match k % 7 {
                0 | 1 => 15_000,
                2 => 15_000 + (k >> 8) as i64 % 5000 - 2500,
                3 => 15_000 + (k >> 8) as i64 % 100_000,
                4 => 15_000 + (k >> 8) as i64 % 900_000,
                5 => 15_000 + (k >> 8) as i64 % 50_000_000,
                _ => 1 + (k >> 8) as i64 % 3,
            };
            v = match (k >> 40) % 6 {
                0 => v,
                1 => v + 1.0,
                2 => f64::from_bits(rnd()),
                3 => v * 1.000_001,
                4 => ((k >> 20) % 1000) as f64 / 7.0,
                _ => -v,
            };
            out.push((t, v));
        }
        out
    }

    #[test]
    fn fast_loop_matches_stepwise_also_on_truncated_chunks() {
        for seed in 1..40u64 {
            let samples = mixed_samples(seed * 0x9e37_79b9, 130);
            let mut a = XorAppender::new();
            for &(t, v) in &samples {
                a.append(t, v);
            }
            let full = a.bytes().to_vec();
            for cut in (2..=full.len()).rev().step_by(3) {
                let b = &full[..cut];
                let mut step = Vec::new();
                let mut it = XorIterator::new(b);
                while it.next() == ValueType::Float {
                    step.push(it.at());
                }
                let step_err = it.err().map(|e| e.to_string());
                let mut fast = Vec::new();
                let mut it = XorIterator::new(b);
                assert!(!it.collect_into(i64::MIN, i64::MAX, &mut fast));
                let bits = |v: &[(i64, f64)]| -> Vec<(i64, u64)> {
                    v.iter().map(|&(t, v)| (t, v.to_bits())).collect()
                };
                assert_eq!(bits(&fast), bits(&step), "seed {seed} cut {cut}");
                assert_eq!(
                    it.err().map(|e| e.to_string()),
                    step_err,
                    "seed {seed} cut {cut}"
                );
                // Seeking to every sample lands on it; collecting a window gives the window.
                if cut == full.len() {
                    assert_eq!(bits(&fast), bits(&samples));
                    for (i, &(t, _)) in samples.iter().enumerate().step_by(7) {
                        let mut it = XorIterator::new(b);
                        assert_eq!(it.seek(t), ValueType::Float);
                        assert_eq!(it.at().0, t);
                        let mut w = Vec::new();
                        let hi = samples[(i + 5).min(samples.len() - 1)].0;
                        it.collect_into(t, hi, &mut w);
                        let want: Vec<_> = samples
                            .iter()
                            .copied()
                            .filter(|s| s.0 > t && s.0 <= hi)
                            .collect();
                        assert_eq!(bits(&w), bits(&want), "seed {seed} window at {i}");
                    }
                    let mut it = XorIterator::new(b);
                    assert_eq!(it.seek(i64::MAX), ValueType::None);
                    assert!(it.err().is_none());
                }
            }
        }
    }

    /// A plain bit-by-bit decoder written from the format description, as the reference for
    /// the fast decoder: the samples it yields and the error that stops it.
    fn reference_decode(bytes: &[u8]) -> (Vec<(i64, u64)>, Option<String>) {
        use crate::chunkenc::bstream::BitReader;
        let n = num_samples(bytes);
        let mut r = BitReader::new(bytes.get(2..).unwrap_or(&[]));
        let mut out = Vec::new();
        let (mut t, mut v, mut td, mut lead, mut trail) = (0i64, 0u64, 0i64, 0u32, 0u32);
        let err = |what: &str, i: usize| {
            Some(format!("XOR chunk truncated reading {what} of sample {i}"))
        };
        let varint = |r: &mut BitReader, signed: bool| -> Option<i64> {
            let mut buf = Vec::new();
            loop {
                let b = r.read_bits(8)? as u8;
                buf.push(b);
                if b < 0x80 {
                    break;
                }
                if buf.len() == 10 {
                    return None;
                }
            }
            if signed {
                crate::encoding::varint(&buf).map(|x| x.0)
            } else {
                crate::encoding::uvarint(&buf).map(|x| x.0 as i64)
            }
        };
        for i in 0..n {
            if i == 0 {
                let Some(t0) = varint(&mut r, true) else {
                    return (out, err("first timestamp", i));
                };
                let Some(v0) = r.read_bits(64) else {
                    return (out, err("first value", i));
                };
                t = t0;
                v = v0;
                out.push((t, v));
                continue;
            }
            if i == 1 {
                let Some(d) = varint(&mut r, false) else {
                    return (out, err("timestamp delta", i));
                };
                td = d;
            } else {
                let mut ones = 0;
                while ones < 4 {
                    match r.read_bit() {
                        None => return (out, err("timestamp", i)),
                        Some(true) => ones += 1,
                        Some(false) => break,
                    }
                }
                let size = [0, 14, 17, 20, 64][ones];
                let mut dod = 0i64;
                if size > 0 {
                    let Some(b) = r.read_bits(size) else {
                        return (out, err("timestamp", i));
                    };
                    dod = if size < 64 && b > 1 << (size - 1) {
                        b as i64 - (1 << size)
                    } else {
                        b as i64
                    };
                }
                td = td.wrapping_add(dod);
            }
            t = t.wrapping_add(td);
            match r.read_bit() {
                None => return (out, err("value", i)),
                Some(false) => {}
                Some(true) => {
                    let Some(c) = r.read_bit() else {
                        return (out, err("value", i));
                    };
                    if c {
                        let (Some(l), Some(s)) = (r.read_bits(5), r.read_bits(6)) else {
                            return (out, err("value", i));
                        };
                        let s = if s == 0 { 64 } else { s as u32 };
                        if l as u32 + s > 64 {
                            return (out, err("value", i));
                        }
                        lead = l as u32;
                        trail = 64 - lead - s;
                    }
                    let Some(x) = r.read_bits(64 - lead - trail) else {
                        return (out, err("value", i));
                    };
                    v ^= x << trail;
                }
            }
            out.push((t, v));
        }
        (out, None)
    }

    #[test]
    fn decoders_match_reference_on_cut_and_flipped_chunks() {
        let mut rnd = xorshift(0x1234_5678_9abc_def1u64);
        let bits = |v: &[(i64, f64)]| -> Vec<(i64, u64)> {
            v.iter().map(|&(t, v)| (t, v.to_bits())).collect()
        };
        for round in 0..3000 {
            let samples = mixed_samples(rnd(), 1 + (rnd() % 200) as usize);
            let mut a = XorAppender::new();
            for &(t, v) in &samples {
                a.append(t, v);
            }
            let mut b = a.bytes().to_vec();
            if round % 3 != 0 {
                let cut = 2 + (rnd() as usize) % (b.len() - 1);
                b.truncate(cut);
            }
            if round % 2 == 0 {
                for _ in 0..1 + rnd() % 4 {
                    let bit = (rnd() as usize) % (b.len() * 8);
                    b[bit / 8] ^= 0x80 >> (bit % 8);
                }
            }
            let (want, want_err) = reference_decode(&b);
            let mut it = XorIterator::new(&b);
            let mut step = Vec::new();
            while it.next() == ValueType::Float {
                step.push(it.at());
            }
            assert_eq!(bits(&step), want, "next() round {round}");
            assert_eq!(
                it.err().map(|e| e.to_string()),
                want_err
                    .clone()
                    .map(|m| crate::Error::Encoding(m).to_string()),
                "round {round}"
            );
            let mut fast = Vec::new();
            let mut it = XorIterator::new(&b);
            it.collect_into(i64::MIN, i64::MAX, &mut fast);
            assert_eq!(bits(&fast), want, "collect_into round {round}");
            assert_eq!(
                it.err().map(|e| e.to_string()),
                want_err.map(|m| crate::Error::Encoding(m).to_string()),
                "round {round}"
            );
            let mut it = XorIterator::new(&b);
            it.seek(i64::MAX);
        }
    }

    /// `decode_chunk_cut` gives what `collect_into` over a new iterator gives (samples,
    /// whether it passed `hi`, the error) on whole, cut and bit-flipped chunks and random
    /// bounds.
    #[test]
    fn decode_chunk_cut_matches_collect_into() {
        let mut rnd = xorshift(0x5eed_0fc0_ffee_u64);
        for round in 0..3000 {
            let samples = mixed_samples(rnd(), 1 + (rnd() % 200) as usize);
            let mut b = encode(&samples);
            if round % 3 == 1 {
                let cut = 2 + (rnd() as usize) % (b.len() - 1);
                b.truncate(cut);
            }
            if round % 4 == 2 {
                let bit = (rnd() as usize) % (b.len() * 8);
                b[bit / 8] ^= 0x80 >> (bit % 8);
            }
            let pick = |r: u64| samples[(r as usize) % samples.len()].0 + (r % 3) as i64 - 1;
            let (lo, hi) = match round % 5 {
                0 => (i64::MIN, i64::MAX),
                1 => (pick(rnd()), i64::MAX),
                2 => (i64::MIN, pick(rnd())),
                _ => (pick(rnd()), pick(rnd())),
            };
            let mut want = vec![(1, 1.0)];
            let mut it = XorIterator::new(&b);
            let past = it.collect_into(lo, hi, &mut want);
            let want_res = match it.err() {
                Some(e) if !past => Err(e.to_string()),
                _ => Ok(past),
            };
            let mut got = vec![(1, 1.0)];
            let got_res = decode_chunk_cut(TailedChunk::new(&b, b.len()), lo, hi, &mut got)
                .map_err(|e| e.to_string());
            let bits = |v: &[(i64, f64)]| -> Vec<(i64, u64)> {
                v.iter().map(|&(t, v)| (t, v.to_bits())).collect()
            };
            assert_eq!(bits(&got), bits(&want), "round {round} [{lo}, {hi}]");
            assert_eq!(got_res, want_res, "round {round} [{lo}, {hi}]");
        }
    }

    #[test]
    fn decode_chunk_cut_spanned_matches_decode_chunk_cut() {
        let mut rnd = xorshift(0x0dd5_eed5_1234_u64);
        for round in 0..2000 {
            let n = 150 + (rnd() % 400) as usize;
            let mut samples = mixed_samples(rnd(), n);
            if round % 2 == 0 {
                // Evenly spaced, as scraped.
                for (i, s) in samples.iter_mut().enumerate() {
                    s.0 = 1_700_000_000_000 + i as i64 * 15_000;
                }
            }
            let mut b = encode(&samples);
            if round % 5 == 1 {
                let cut = 2 + (rnd() as usize) % (b.len() - 1);
                b.truncate(cut);
            }
            if round % 7 == 3 {
                let bit = (rnd() as usize) % (b.len() * 8);
                b[bit / 8] ^= 0x80 >> (bit % 8);
            }
            let span = (samples[0].0, samples[samples.len() - 1].0);
            let hi = samples[(rnd() as usize) % samples.len()].0 + (rnd() % 3) as i64 - 1;
            let lo = hi - (rnd() % 600_000) as i64;
            let mut want = vec![(1, 1.0)];
            let want_res = decode_chunk_cut(TailedChunk::new(&b, b.len()), lo, hi, &mut want)
                .map_err(|e| e.to_string());
            let mut got = vec![(1, 1.0)];
            let got_res =
                decode_chunk_cut_spanned(TailedChunk::new(&b, b.len()), span, lo, hi, &mut got)
                    .map_err(|e| e.to_string());
            let bits = |v: &[(i64, f64)]| -> Vec<(i64, u64)> {
                v.iter().map(|&(t, v)| (t, v.to_bits())).collect()
            };
            assert_eq!(bits(&got), bits(&want), "round {round} [{lo}, {hi}]");
            assert_eq!(got_res, want_res, "round {round} [{lo}, {hi}]");
        }
    }

    #[test]
    fn truncated_chunk_errors() {
        let mut a = XorAppender::new();
        for i in 0..10 {
            a.append(i * 1000, i as f64 * 3.3);
        }
        let b = a.bytes();
        let mut it = XorIterator::new(&b[..b.len() - 3]);
        while it.next() != ValueType::None {}
        assert!(it.err().is_some());
    }

    /// Decoded samples (as bits) and the error that stopped decoding (chunk index, message).
    type Decoded = (Vec<(i64, u64)>, Option<(usize, String)>);

    /// Sequential decoding of a chunk list: samples (as bits) and the failing chunk's index and
    /// message.
    fn sequential(chunks: &[&[u8]]) -> Decoded {
        let mut out = Vec::new();
        for (k, c) in chunks.iter().enumerate() {
            let mut it = XorIterator::new(c);
            it.collect_into(i64::MIN, i64::MAX, &mut out);
            if let Some(e) = it.err() {
                let bits = out.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                return (bits, Some((k, e.to_string())));
            }
        }
        (out.iter().map(|&(t, v)| (t, v.to_bits())).collect(), None)
    }

    /// `decode_chunks_into` after a prefix already in the output: what it appended and its
    /// error as (chunk, message).
    ///
    /// Also decodes the chunks through `decode_tailed_into`, each followed by bytes of junk
    /// (none, fewer than `PAD`, `PAD` or more: chunks decoded in place and from the copy,
    /// mixed), and checks that it gives the same.
    fn batch(chunks: &[&[u8]]) -> Decoded {
        type Decoder<'a> = &'a dyn Fn(&mut Vec<(i64, f64)>) -> Result<(), ChunkDecodeError>;
        let run = |f: Decoder| {
            let mut out = vec![(7, 7.0); 3];
            let res = f(&mut out);
            assert_eq!(&out[..3], &[(7, 7.0); 3], "prefix kept");
            let bits = out[3..].iter().map(|&(t, v)| (t, v.to_bits())).collect();
            (bits, res.err().map(|e| (e.chunk, e.err.to_string())))
        };
        let copied = run(&|out| decode_chunks_into(chunks, out));
        let mut junk = xorshift(0x1357_9bdf_2468_ace0 ^ chunks.len() as u64);
        let stored: Vec<Vec<u8>> = chunks
            .iter()
            .map(|c| {
                let tail = [0, 5, PAD, PAD + 17][(junk() % 4) as usize];
                let mut v = c.to_vec();
                v.extend((0..tail).map(|_| junk() as u8));
                v
            })
            .collect();
        let tailed: Vec<TailedChunk> = stored
            .iter()
            .zip(chunks)
            .map(|(v, c)| TailedChunk::new(v, c.len()))
            .collect();
        assert_eq!(run(&|out| decode_tailed_into(&tailed, out)), copied);
        copied
    }

    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        a.bytes().to_vec()
    }

    #[test]
    fn batch_matches_sequential_on_random_chunks() {
        let mut rnd = xorshift(0x0bad_cafe_f00d_1234u64);
        for round in 0..1500 {
            let n = (rnd() % 8) as usize;
            let owned: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = match rnd() % 4 {
                        0 => 1 + (rnd() % 3) as usize,
                        _ => 1 + (rnd() % 250) as usize,
                    };
                    encode(&mixed_samples(rnd(), len))
                })
                .collect();
            let chunks: Vec<&[u8]> = owned.iter().map(|c| c.as_slice()).collect();
            let want = sequential(&chunks);
            assert!(want.1.is_none());
            assert_eq!(batch(&chunks), want, "round {round}");
        }
    }

    #[test]
    fn batch_chunk_pairs_of_every_small_length() {
        // Both orders of short/long pairs, 0..=5 samples against each other and against 130,
        // an empty chunk (header only) and a chunk shorter than its header.
        let lens = [0usize, 1, 2, 3, 4, 5, 130];
        for (i, &la) in lens.iter().enumerate() {
            for (j, &lb) in lens.iter().enumerate() {
                let a = encode(&mixed_samples(11 + i as u64, la));
                let b = encode(&mixed_samples(101 + j as u64, lb));
                let c = encode(&mixed_samples(1001, 7));
                for list in [
                    vec![a.as_slice(), b.as_slice()],
                    vec![a.as_slice(), b.as_slice(), c.as_slice()],
                    vec![c.as_slice(), a.as_slice(), &[][..], b.as_slice()],
                ] {
                    let want = sequential(&list);
                    assert!(want.1.is_none());
                    assert_eq!(
                        want.0.len(),
                        list.iter().map(|c| num_samples(c)).sum::<usize>()
                    );
                    assert_eq!(batch(&list), want, "lengths {la} {lb}");
                }
            }
        }
    }

    #[test]
    fn batch_corrupt_chunks_error_like_sequential() {
        let mut rnd = xorshift(0x5eed_5eed_0000_0001u64);
        let mut errors = 0;
        for round in 0..2000 {
            let n = 1 + (rnd() % 5) as usize;
            let mut owned: Vec<Vec<u8>> = (0..n)
                .map(|_| encode(&mixed_samples(rnd(), 1 + (rnd() % 160) as usize)))
                .collect();
            let bad = (rnd() as usize) % n;
            let b = &mut owned[bad];
            match round % 3 {
                0 => {
                    let cut = 2 + (rnd() as usize) % (b.len() - 1);
                    b.truncate(cut);
                }
                1 => {
                    // A header claiming more samples than the stream holds.
                    let more = num_samples(b) as u16 + 1 + (rnd() % 300) as u16;
                    b[..2].copy_from_slice(&more.to_be_bytes());
                }
                _ => {
                    for _ in 0..1 + rnd() % 4 {
                        let bit = (rnd() as usize) % (b.len() * 8);
                        b[bit / 8] ^= 0x80 >> (bit % 8);
                    }
                }
            }
            let chunks: Vec<&[u8]> = owned.iter().map(|c| c.as_slice()).collect();
            let want = sequential(&chunks);
            if let Some((k, _)) = &want.1 {
                assert_eq!(*k, bad);
                errors += 1;
            }
            assert_eq!(batch(&chunks), want, "round {round}");
        }
        assert!(errors > 1000, "only {errors} corrupt lists failed");
    }

    /// Chunks of a constant series at a steady interval (decoded by `repeated_tail`) give what
    /// sequential decoding gives, of every length, and so do the same chunks with one sample
    /// changed, cut short, with a header claiming more samples, or with bits flipped.
    #[test]
    fn batch_repeated_chunks_match_sequential() {
        let mut rnd = xorshift(0x0c05_7a7e_u64);
        for n in 0..=140usize {
            let steady: Vec<(i64, f64)> =
                (0..n as i64).map(|i| (5_000 + i * 15_000, 1.0)).collect();
            let whole = encode(&steady);
            let mut variants = vec![whole.clone()];
            if n > 2 {
                let mut changed = steady.clone();
                let k = 2 + (rnd() as usize) % (n - 2);
                if rnd().is_multiple_of(2) {
                    changed[k].1 = 2.0;
                } else {
                    changed[k].0 += 1;
                }
                variants.push(encode(&changed));
                let mut cut = whole.clone();
                cut.truncate(whole.len() - 1 - (rnd() as usize) % 3.min(whole.len() - 13));
                variants.push(cut);
                let mut more = whole.clone();
                more[..2].copy_from_slice(&(n as u16 + 1 + (rnd() % 4) as u16).to_be_bytes());
                variants.push(more);
                let mut flipped = whole.clone();
                let bit = 8 * 13 + (rnd() as usize) % ((whole.len() - 13) * 8);
                flipped[bit / 8] ^= 0x80 >> (bit % 8);
                variants.push(flipped);
            }
            for v in &variants {
                let other = encode(&mixed_samples(n as u64 + 3, 9));
                for list in [vec![v.as_slice()], vec![other.as_slice(), v.as_slice()]] {
                    assert_eq!(batch(&list), sequential(&list), "{n} samples");
                }
            }
            let mut out = Vec::new();
            decode_chunks_into(&[&whole], &mut out).expect("valid chunk");
            assert_eq!(out, steady, "{n} samples");
        }
    }

    /// Microbenchmark: `cargo test --release -p tsdb --lib decode_throughput -- --ignored
    /// --nocapture`. Series of 4 chunks of 120 samples at a 15 s interval with jitter, as a
    /// 2h block holds them (counters and gauges alternating), decoded chunk by chunk with
    /// `collect_into` and per series with `decode_chunks_into`.
    #[test]
    #[ignore]
    fn decode_throughput() {
        let mut rnd = xorshift(0x1234_4321_aaaa_5555u64);
        let series = 2500;
        let mut owned: Vec<Vec<Vec<u8>>> = Vec::with_capacity(series);
        for s in 0..series {
            let mut t = 1_795_665_600_000i64 + (rnd() % 15_000) as i64;
            let mut v = if s % 2 == 0 { 0.0 } else { 50.0 };
            let mut chunks = Vec::new();
            for _ in 0..4 {
                let mut a = XorAppender::new();
                for _ in 0..120 {
                    t += 15_000 + (rnd() % 41) as i64 - 20;
                    v = if s % 2 == 0 {
                        v + (rnd() % 100) as f64
                    } else {
                        ((rnd() % 10_000) as f64 / 100.0).max(0.0)
                    };
                    a.append(t, v);
                }
                chunks.push(a.bytes().to_vec());
            }
            owned.push(chunks);
        }
        // IGNIS_BENCH_CHUNKS=<block chunk file>: the first 10k series' chunks of a real block
        // instead (a chunk file holds each series' chunks one after another).
        if let Ok(path) = std::env::var("IGNIS_BENCH_CHUNKS") {
            let file = std::fs::read(&path).expect("chunk file");
            let mut at = 8;
            let mut all = Vec::new();
            while at < file.len() && all.len() < 40_000 {
                let Some((len, n)) = crate::encoding::uvarint(&file[at..]) else {
                    break;
                };
                let data = at + n + 1;
                all.push(file[data..data + len as usize].to_vec());
                at = data + len as usize + 4;
            }
            owned = all.chunks(4).map(|c| c.to_vec()).collect();
        }
        let samples: usize = owned.iter().flatten().map(|c| num_samples(c)).sum();
        let samples = samples as f64;
        let lists: Vec<Vec<&[u8]>> = owned
            .iter()
            .map(|cs| cs.iter().map(|c| c.as_slice()).collect())
            .collect();
        // Thread CPU time, so that time the thread waits for a core does not count.
        let cpu_ns = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid timespec for the call to fill.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
        };
        let reps = 10;
        let mut out = Vec::with_capacity(480);
        for round in 0..5 {
            let t0 = cpu_ns();
            let mut sum = 0u64;
            for _ in 0..reps {
                for l in &lists {
                    out.clear();
                    for c in l {
                        XorIterator::new(c).collect_into(i64::MIN, i64::MAX, &mut out);
                    }
                    sum = sum.wrapping_add(out.last().map_or(0, |s| s.1.to_bits()));
                }
            }
            let seq = (cpu_ns() - t0) / samples / reps as f64;
            let t0 = cpu_ns();
            let mut sum2 = 0u64;
            for _ in 0..reps {
                for l in &lists {
                    out.clear();
                    decode_chunks_into(l, &mut out).expect("valid chunks");
                    sum2 = sum2.wrapping_add(out.last().map_or(0, |s| s.1.to_bits()));
                }
            }
            let batch = (cpu_ns() - t0) / samples / reps as f64;
            assert_eq!(sum, sum2);
            println!("round {round}: CPU ns/sample: sequential {seq:.2}, batch {batch:.2}");
        }
    }
}
