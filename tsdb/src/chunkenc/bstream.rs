//! Bit streams: most significant bit first, as Prometheus's `bstream`.
//!
//! The writer appends bits to a byte vector; the last byte is padded with zero bits. The reader
//! keeps a 64-bit window so that most reads are a shift and a mask.

/// Appends bits to a byte buffer, most significant bit first.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    /// The bytes; the last one may be partly filled.
    pub bytes: Vec<u8>,
    /// Free bits left in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    /// A writer that continues after `bytes`, which are taken as whole bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        BitWriter { bytes, free: 0 }
    }

    /// A writer continuing a stream whose last byte has `free` unused low bits.
    pub fn resume(bytes: Vec<u8>, free: u8) -> Self {
        BitWriter { bytes, free }
    }

    /// Free bits in the last byte.
    pub fn free_bits(&self) -> u8 {
        self.free
    }

    /// Appends one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            *self.bytes.last_mut().unwrap() |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// Appends the low `nbits` bits of `v`, most significant first.
    ///
    /// Whole bytes are written as Prometheus's `bstream.writeByte` does: it always appends a
    /// new byte after the one it fills, so a stream that ends byte-aligned right after a whole
    /// byte carries one trailing zero byte. Chunk bytes are identical to Prometheus's only
    /// with this quirk. Here the bits go in with a few shifts, not bit by bit: as many as the
    /// last byte has room for, then whole bytes, then the rest; the quirk's empty byte (`free`
    /// 8) is taken back first and added again when `nbits` is a whole number of bytes written
    /// from a byte boundary, which is when Go's byte loop leaves it.
    #[inline]
    pub fn write_bits(&mut self, v: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        if nbits == 0 {
            return;
        }
        let aligned = self.free == 0 || self.free == 8;
        if self.free == 8 {
            self.bytes.pop();
            self.free = 0;
        }
        let v = if nbits == 64 {
            v
        } else {
            v & ((1u64 << nbits) - 1)
        };
        let mut n = nbits;
        if self.free > 0 {
            let take = (self.free as u32).min(n);
            let top = (v >> (n - take)) & ((1u64 << take) - 1);
            if let Some(last) = self.bytes.last_mut() {
                *last |= (top << (self.free as u32 - take)) as u8;
            }
            self.free -= take as u8;
            n -= take;
        }
        while n >= 8 {
            self.bytes.push((v >> (n - 8)) as u8);
            n -= 8;
        }
        if n > 0 {
            self.bytes.push((v << (8 - n)) as u8);
            self.free = 8 - n as u8;
        }
        if aligned && nbits >= 8 && nbits.is_multiple_of(8) {
            self.bytes.push(0);
            self.free = 8;
        }
    }

    /// Appends one whole byte (Go's `writeByte`: fills the free bits of the last byte, then
    /// always appends a new byte holding the rest, possibly none).
    #[inline]
    pub fn write_byte(&mut self, byt: u8) {
        self.write_bits(u64::from(byt), 8);
    }
}

/// Reads bits from a byte slice, most significant bit first.
///
/// The next bits of the stream sit left-aligned in a 64-bit window; a refill loads eight bytes
/// at once where the slice has them, so most reads are a shift and a mask.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte not yet counted into `valid`.
    pos: usize,
    /// Bit window; its top `valid` bits are the next bits of the stream. Bits below them are
    /// either zero or the stream's own next bits, so OR-ing a reload over them is harmless.
    window: u64,
    valid: u32,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            window: 0,
            valid: 0,
        }
    }

    /// Tops the window up to at least 57 valid bits, or to the end of the data.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(next) = self.bytes.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(next.try_into().expect("8 bytes"));
            // valid < 64 here: callers refill only when they need more bits than they have.
            self.window |= word >> self.valid;
            let whole = (63 - self.valid) / 8;
            self.pos += whole as usize;
            self.valid += whole * 8;
        } else {
            while self.valid <= 56 && self.pos < self.bytes.len() {
                self.window |= (self.bytes[self.pos] as u64) << (56 - self.valid);
                self.pos += 1;
                self.valid += 8;
            }
        }
    }

    /// The reader's position (next byte, bit window, valid bits), to resume with
    /// [`BitReader::at_state`] over the same bytes.
    pub fn state(&self) -> (usize, u64, u32) {
        (self.pos, self.window, self.valid)
    }

    /// A reader over `bytes` at a position taken with [`BitReader::state`] over the same bytes.
    pub fn at_state(bytes: &'a [u8], (pos, window, valid): (usize, u64, u32)) -> Self {
        BitReader {
            bytes,
            pos: pos.min(bytes.len()),
            window,
            valid: valid.min(64),
        }
    }

    /// Bits consumed so far.
    pub fn bits_read(&self) -> usize {
        self.pos * 8 - self.valid as usize
    }

    /// Reads one bit; `None` at the end of the data.
    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        if self.valid == 0 {
            self.refill();
            if self.valid == 0 {
                return None;
            }
        }
        let bit = self.window >> 63 != 0;
        self.window <<= 1;
        self.valid -= 1;
        Some(bit)
    }

    /// Returns the next `nbits` (1..=56) bits without consuming them, zero-padded past the end
    /// of the data, and how many of them are real.
    #[inline(always)]
    pub fn peek(&mut self, nbits: u32) -> (u64, u32) {
        debug_assert!((1..=56).contains(&nbits));
        if self.valid < nbits {
            self.refill();
        }
        (self.window >> (64 - nbits), self.valid.min(nbits))
    }

    /// Consumes `nbits` bits that [`BitReader::peek`] showed to be there.
    #[inline(always)]
    pub fn consume(&mut self, nbits: u32) {
        debug_assert!(nbits <= self.valid && nbits < 64);
        self.window <<= nbits;
        self.valid -= nbits;
    }

    /// Reads `nbits` (≤ 64) bits as an unsigned integer; `None` if the data ends first.
    #[inline(always)]
    pub fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        if nbits > 56 {
            return self.read_wide(nbits);
        }
        if nbits == 0 {
            return Some(0);
        }
        if self.valid < nbits {
            self.refill();
            if self.valid < nbits {
                return None;
            }
        }
        let v = self.window >> (64 - nbits);
        self.window <<= nbits;
        self.valid -= nbits;
        Some(v)
    }

    /// `read_bits` for 57..=64 bits: two reads, since the window guarantees only 57.
    #[cold]
    fn read_wide(&mut self, nbits: u32) -> Option<u64> {
        let hi = self.read_bits(nbits - 32)?;
        let lo = self.read_bits(32)?;
        Some(hi << 32 | lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer as Go's `bstream` writes: bit by bit, and whole bytes with `writeByte`.
    #[derive(Default)]
    struct GoWriter {
        bytes: Vec<u8>,
        free: u8,
    }

    impl GoWriter {
        fn write_bit(&mut self, bit: bool) {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            if bit {
                *self.bytes.last_mut().unwrap() |= 1 << (self.free - 1);
            }
            self.free -= 1;
        }

        fn write_byte(&mut self, byt: u8) {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let free = self.free as u32;
            *self.bytes.last_mut().unwrap() |= ((byt as u16) >> (8 - free)) as u8;
            self.bytes.push(((byt as u16) << free) as u8);
        }

        fn write_bits(&mut self, v: u64, mut nbits: u32) {
            while nbits >= 8 {
                self.write_byte((v >> (nbits - 8)) as u8);
                nbits -= 8;
            }
            while nbits > 0 {
                self.write_bit((v >> (nbits - 1)) & 1 == 1);
                nbits -= 1;
            }
        }
    }

    #[test]
    fn writes_the_bytes_go_writes() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let (mut w, mut g) = (BitWriter::default(), GoWriter::default());
            for _ in 0..(rnd() % 40) {
                let v = rnd();
                match rnd() % 4 {
                    0 => {
                        w.write_bit(v & 1 == 1);
                        g.write_bit(v & 1 == 1);
                    }
                    1 => {
                        w.write_byte(v as u8);
                        g.write_byte(v as u8);
                    }
                    _ => {
                        let n = (rnd() % 65) as u32;
                        w.write_bits(v, n);
                        g.write_bits(v, n);
                    }
                }
                assert_eq!(w.bytes, g.bytes);
                assert_eq!(w.free, g.free);
            }
        }
    }

    #[test]
    fn round_trip() {
        let mut w = BitWriter::default();
        let items: Vec<(u64, u32)> = (0..500u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15), (i % 64 + 1) as u32))
            .collect();
        for &(v, n) in &items {
            w.write_bits(v, n);
            w.write_bit(v & 1 == 1);
        }
        let mut r = BitReader::new(&w.bytes);
        for &(v, n) in &items {
            let mask = if n == 64 { u64::MAX } else { (1 << n) - 1 };
            assert_eq!(r.read_bits(n), Some(v & mask));
            assert_eq!(r.read_bit(), Some(v & 1 == 1));
        }
    }
}
