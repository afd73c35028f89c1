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
    /// with this quirk.
    #[inline]
    pub fn write_bits(&mut self, v: u64, mut nbits: u32) {
        debug_assert!(nbits <= 64);
        while nbits >= 8 {
            let byt = (v >> (nbits - 8)) as u8;
            self.write_byte(byt);
            nbits -= 8;
        }
        while nbits > 0 {
            self.write_bit((v >> (nbits - 1)) & 1 == 1);
            nbits -= 1;
        }
    }

    /// Appends one whole byte (Go's `writeByte`: fills the free bits of the last byte, then
    /// always appends a new byte holding the rest, possibly none).
    #[inline]
    pub fn write_byte(&mut self, byt: u8) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        let free = self.free as u32;
        if let Some(last) = self.bytes.last_mut() {
            *last |= ((byt as u16) >> (8 - free)) as u8;
        }
        self.bytes.push(((byt as u16) << free) as u8);
    }
}

/// Reads bits from a byte slice, most significant bit first.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into the window.
    pos: usize,
    /// Bit window; the valid bits are the top `valid` bits.
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

    #[inline]
    fn refill(&mut self) {
        if self.pos + 8 <= self.bytes.len() && self.valid == 0 {
            self.window =
                u64::from_be_bytes(self.bytes[self.pos..self.pos + 8].try_into().unwrap());
            self.pos += 8;
            self.valid = 64;
            return;
        }
        while self.valid <= 56 && self.pos < self.bytes.len() {
            self.window |= (self.bytes[self.pos] as u64) << (56 - self.valid);
            self.pos += 1;
            self.valid += 8;
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

    /// Reads `nbits` (≤ 64) bits as an unsigned integer; `None` if the data ends first.
    #[inline]
    pub fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        if nbits == 0 {
            return Some(0);
        }
        if nbits <= self.valid {
            let v = self.window >> (64 - nbits);
            self.window = if nbits == 64 { 0 } else { self.window << nbits };
            self.valid -= nbits;
            return Some(v);
        }
        // take what the window has, refill, take the rest
        let have = self.valid;
        let hi = if have == 0 {
            0
        } else {
            self.window >> (64 - have)
        };
        self.window = 0;
        self.valid = 0;
        self.refill();
        let need = nbits - have;
        if self.valid < need {
            return None;
        }
        let lo = self.window >> (64 - need);
        self.window = if need == 64 { 0 } else { self.window << need };
        self.valid -= need;
        Some(if need == 64 { lo } else { (hi << need) | lo })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
