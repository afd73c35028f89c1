//! The head's series by reference: a dense table indexed by the 32-bit series reference.
//!
//! Series references are handed out from 1 upwards, so a table indexed by reference is dense.
//! It is a three-level radix tree (10 + 10 + 12 bits of the reference): the first level is
//! allocated with the table, the lower levels when a reference in their range is first
//! stored, and never freed before the table. A lookup is three dependent loads and the read
//! lock of one slot, without hashing and without a lock shared by other references; series of
//! one remote-write request were created together and so have neighbouring references, whose
//! slots share cache lines.

use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

const LEAF_BITS: u32 = 12;
const MID_BITS: u32 = 10;
const TOP_BITS: u32 = 10;
const LEAF: usize = 1 << LEAF_BITS;
const MID: usize = 1 << MID_BITS;
const TOP: usize = 1 << TOP_BITS;

type Slot<T> = RwLock<Option<Arc<T>>>;
type Leaf<T> = Box<[Slot<T>]>;
type Mid<T> = Box<[OnceLock<Leaf<T>>]>;

/// Values by 32-bit reference; see the module docs.
pub struct RefTable<T> {
    top: Box<[OnceLock<Mid<T>>]>,
}

impl<T> Default for RefTable<T> {
    fn default() -> Self {
        RefTable {
            top: (0..TOP).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The (top, mid, leaf) indexes of reference `r`, `None` beyond 32 bits.
#[inline]
fn split(r: u64) -> Option<(usize, usize, usize)> {
    let r = u32::try_from(r).ok()? as usize;
    Some((
        r >> (LEAF_BITS + MID_BITS),
        (r >> LEAF_BITS) & (MID - 1),
        r & (LEAF - 1),
    ))
}

impl<T> RefTable<T> {
    #[inline]
    fn slot(&self, r: u64) -> Option<&Slot<T>> {
        let (t, m, l) = split(r)?;
        Some(&self.top[t].get()?[m].get()?[l])
    }

    /// The value stored for `r`.
    #[inline]
    pub fn get(&self, r: u64) -> Option<Arc<T>> {
        self.slot(r)?.read().clone()
    }

    /// `f` of the value stored for `r`, under its slot's read lock.
    #[inline]
    pub fn with<R>(&self, r: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.slot(r)?.read().as_deref().map(f)
    }

    /// Stores `v` for `r` unless a value is stored there already (then returns `false`).
    /// References beyond 32 bits are refused the same way.
    pub fn insert_new(&self, r: u64, v: Arc<T>) -> bool {
        let Some((t, m, l)) = split(r) else {
            return false;
        };
        let mid = self.top[t].get_or_init(|| (0..MID).map(|_| OnceLock::new()).collect());
        let leaf = mid[m].get_or_init(|| (0..LEAF).map(|_| RwLock::new(None)).collect());
        let mut slot = leaf[l].write();
        if slot.is_some() {
            return false;
        }
        *slot = Some(v);
        true
    }

    /// Every allocated slot, in reference order.
    fn slots(&self) -> impl Iterator<Item = &Slot<T>> {
        self.top
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|mid| mid.iter().filter_map(OnceLock::get))
            .flat_map(|leaf| leaf.iter())
    }

    /// Calls `f` with every stored value, in reference order (each slot read-locked during
    /// its call).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<T>)) {
        for slot in self.slots() {
            if let Some(v) = &*slot.read() {
                f(v);
            }
        }
    }

    /// Every stored value, in reference order.
    pub fn values(&self) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        self.for_each(|v| out.push(v.clone()));
        out
    }

    /// Removes the values for which `keep` returns `false` (each slot write-locked during its
    /// call, so a concurrent [`RefTable::get`] sees the value before or not at all).
    pub fn retain(&self, mut keep: impl FnMut(&Arc<T>) -> bool) {
        for slot in self.slots() {
            if slot.read().is_none() {
                continue;
            }
            let mut s = slot.write();
            if s.as_ref().is_some_and(|v| !keep(v)) {
                *s = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_finds_and_removes_by_reference() {
        let t: RefTable<u64> = RefTable::default();
        let refs = [
            1u64,
            2,
            4095,
            4096,
            4097,
            1 << 22,
            (1 << 22) + 5,
            u32::MAX as u64,
        ];
        for &r in &refs {
            assert!(t.get(r).is_none());
            assert!(t.insert_new(r, Arc::new(r * 10)));
            assert!(!t.insert_new(r, Arc::new(0)), "{r} stored twice");
        }
        assert!(!t.insert_new(1 << 32, Arc::new(0)));
        assert!(t.get(1 << 32).is_none());
        assert!(t.get(3).is_none());
        assert!(t.get(1 << 23).is_none());
        for &r in &refs {
            assert_eq!(t.get(r).as_deref(), Some(&(r * 10)));
        }
        let all: Vec<u64> = t.values().iter().map(|v| **v).collect();
        assert_eq!(all, refs.iter().map(|r| r * 10).collect::<Vec<_>>());
        // Remove the odd references; the others stay, and a removed one can be stored again.
        t.retain(|v| (**v / 10) % 2 == 0);
        for &r in &refs {
            assert_eq!(t.get(r).is_some(), r % 2 == 0, "{r}");
        }
        assert!(t.insert_new(1, Arc::new(7)));
        assert_eq!(t.get(1).as_deref(), Some(&7));
        let mut n = 0;
        t.for_each(|_| n += 1);
        assert_eq!(n, refs.iter().filter(|&&r| r % 2 == 0).count() + 1);
    }
}
