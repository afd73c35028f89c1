//! Postings lists: sorted series references, as stored on disk (big-endian u32 lists) and as
//! combined by queries (intersection, union, difference).
//!
//! On disk a postings list is `len <4B> │ #refs <4B> │ ref <4B>… │ CRC-32C <4B>`; the reader
//! checks length and CRC and hands out a [`BigEndianPostings`] over the `ref` bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A sorted iterator over series references with seeking.
pub trait Postings {
    /// Advances to the next reference; false at the end.
    fn next(&mut self) -> bool;
    /// Advances to the first reference `>= v`; stays if already there. False at the end.
    fn seek(&mut self, v: u64) -> bool;
    /// The current reference.
    fn at(&self) -> u64;
}

impl<P: Postings + ?Sized> Postings for Box<P> {
    fn next(&mut self) -> bool {
        (**self).next()
    }
    fn seek(&mut self, v: u64) -> bool {
        (**self).seek(v)
    }
    fn at(&self) -> u64 {
        (**self).at()
    }
}

/// Collects the remaining references of `p`.
pub fn collect(mut p: impl Postings) -> Vec<u64> {
    let mut out = Vec::new();
    while p.next() {
        out.push(p.at());
    }
    out
}

/// Postings over an owned sorted vector.
#[derive(Clone, Debug, Default)]
pub struct ListPostings {
    list: Vec<u64>,
    /// Index of the current element + 1 (0 before the first).
    i: usize,
}

impl ListPostings {
    /// Postings over `list`, which must be sorted and unique.
    pub fn new(list: Vec<u64>) -> Self {
        ListPostings { list, i: 0 }
    }
}

impl Postings for ListPostings {
    fn next(&mut self) -> bool {
        if self.i < self.list.len() {
            self.i += 1;
            true
        } else {
            self.i = self.list.len() + 1;
            false
        }
    }
    fn seek(&mut self, v: u64) -> bool {
        if self.i > self.list.len() {
            return false;
        }
        let from = self.i.saturating_sub(1);
        let off = self.list[from..].partition_point(|&x| x < v);
        let j = from + off;
        if j < self.list.len() {
            self.i = j + 1;
            true
        } else {
            self.i = self.list.len() + 1;
            false
        }
    }
    fn at(&self) -> u64 {
        self.list[self.i - 1]
    }
}

/// Postings over a big-endian u32 list borrowed from an index file.
#[derive(Clone, Debug)]
pub struct BigEndianPostings<'a> {
    b: &'a [u8],
    /// Number of references consumed (the current one is `i - 1`).
    i: usize,
    cur: u64,
}

impl<'a> BigEndianPostings<'a> {
    /// Postings over `b`, whose length must be a multiple of 4.
    pub fn new(b: &'a [u8]) -> Self {
        BigEndianPostings { b, i: 0, cur: 0 }
    }
    fn len(&self) -> usize {
        self.b.len() / 4
    }
    fn get(&self, j: usize) -> u64 {
        let o = j * 4;
        u32::from_be_bytes([self.b[o], self.b[o + 1], self.b[o + 2], self.b[o + 3]]) as u64
    }
}

impl Postings for BigEndianPostings<'_> {
    fn next(&mut self) -> bool {
        if self.i < self.len() {
            self.cur = self.get(self.i);
            self.i += 1;
            true
        } else {
            self.i = self.len() + 1;
            false
        }
    }
    fn seek(&mut self, v: u64) -> bool {
        if self.i > self.len() {
            return false;
        }
        if self.i > 0 && self.cur >= v {
            return true;
        }
        // binary search in the remaining part
        let (mut lo, mut hi) = (self.i, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid) < v {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.len() {
            self.cur = self.get(lo);
            self.i = lo + 1;
            true
        } else {
            self.i = self.len() + 1;
            false
        }
    }
    fn at(&self) -> u64 {
        self.cur
    }
}

/// Postings with nothing in them.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyPostings;

impl Postings for EmptyPostings {
    fn next(&mut self) -> bool {
        false
    }
    fn seek(&mut self, _v: u64) -> bool {
        false
    }
    fn at(&self) -> u64 {
        0
    }
}

struct Intersect<'a> {
    its: Vec<Box<dyn Postings + 'a>>,
    cur: u64,
    done: bool,
}

impl Intersect<'_> {
    /// Finds the smallest common reference `>= target`.
    fn align(&mut self, mut target: u64) -> bool {
        'outer: loop {
            for it in self.its.iter_mut() {
                if !it.seek(target) {
                    self.done = true;
                    return false;
                }
                if it.at() > target {
                    target = it.at();
                    continue 'outer;
                }
            }
            self.cur = target;
            return true;
        }
    }
}

impl Postings for Intersect<'_> {
    fn next(&mut self) -> bool {
        if self.done {
            return false;
        }
        let Some(first) = self.its.first_mut() else {
            self.done = true;
            return false;
        };
        if !first.next() {
            self.done = true;
            return false;
        }
        let t = first.at();
        self.align(t)
    }
    fn seek(&mut self, v: u64) -> bool {
        if self.done {
            return false;
        }
        let t = v.max(self.cur);
        self.align(t)
    }
    fn at(&self) -> u64 {
        self.cur
    }
}

/// The references present in every one of `its` (empty when `its` is empty).
pub fn intersect<'a>(mut its: Vec<Box<dyn Postings + 'a>>) -> Box<dyn Postings + 'a> {
    match its.len() {
        0 => Box::new(EmptyPostings),
        1 => its.pop().unwrap_or_else(|| Box::new(EmptyPostings)),
        _ => Box::new(Intersect {
            its,
            cur: 0,
            done: false,
        }),
    }
}

struct Merge<'a> {
    its: Vec<Box<dyn Postings + 'a>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    started: bool,
    cur: u64,
}

impl Merge<'_> {
    fn init(&mut self) {
        self.started = true;
        for (i, it) in self.its.iter_mut().enumerate() {
            if it.next() {
                self.heap.push(Reverse((it.at(), i)));
            }
        }
    }
}

impl Postings for Merge<'_> {
    fn next(&mut self) -> bool {
        if !self.started {
            self.init();
        } else {
            // advance everything sitting on the current value
            while let Some(&Reverse((v, i))) = self.heap.peek() {
                if v != self.cur {
                    break;
                }
                self.heap.pop();
                if self.its[i].next() {
                    self.heap.push(Reverse((self.its[i].at(), i)));
                }
            }
        }
        match self.heap.peek() {
            Some(&Reverse((v, _))) => {
                self.cur = v;
                true
            }
            None => false,
        }
    }
    fn seek(&mut self, v: u64) -> bool {
        if !self.started {
            self.init();
        }
        if self.heap.is_empty() {
            return false;
        }
        while let Some(&Reverse((x, i))) = self.heap.peek() {
            if x >= v {
                break;
            }
            self.heap.pop();
            if self.its[i].seek(v) {
                self.heap.push(Reverse((self.its[i].at(), i)));
            }
        }
        match self.heap.peek() {
            Some(&Reverse((x, _))) => {
                self.cur = x;
                true
            }
            None => false,
        }
    }
    fn at(&self) -> u64 {
        self.cur
    }
}

/// The union of `its`, without duplicates.
pub fn merge<'a>(mut its: Vec<Box<dyn Postings + 'a>>) -> Box<dyn Postings + 'a> {
    match its.len() {
        0 => Box::new(EmptyPostings),
        1 => its.pop().unwrap_or_else(|| Box::new(EmptyPostings)),
        _ => Box::new(Merge {
            heap: BinaryHeap::with_capacity(its.len()),
            its,
            started: false,
            cur: 0,
        }),
    }
}

struct Without<'a> {
    full: Box<dyn Postings + 'a>,
    drop: Box<dyn Postings + 'a>,
    /// 0 = not started, 1 = drop has a current value, 2 = drop exhausted.
    drop_state: u8,
}

impl Without<'_> {
    fn skip_dropped(&mut self) -> bool {
        loop {
            let v = self.full.at();
            if self.drop_state == 0 || (self.drop_state == 1 && self.drop.at() < v) {
                self.drop_state = if self.drop.seek(v) { 1 } else { 2 };
            }
            if self.drop_state == 1 && self.drop.at() == v {
                if !self.full.next() {
                    return false;
                }
                continue;
            }
            return true;
        }
    }
}

impl Postings for Without<'_> {
    fn next(&mut self) -> bool {
        if !self.full.next() {
            return false;
        }
        self.skip_dropped()
    }
    fn seek(&mut self, v: u64) -> bool {
        if !self.full.seek(v) {
            return false;
        }
        self.skip_dropped()
    }
    fn at(&self) -> u64 {
        self.full.at()
    }
}

/// The references of `full` that are not in `drop`.
pub fn without<'a>(
    full: Box<dyn Postings + 'a>,
    drop: Box<dyn Postings + 'a>,
) -> Box<dyn Postings + 'a> {
    Box::new(Without {
        full,
        drop,
        drop_state: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[u64]) -> Box<dyn Postings> {
        Box::new(ListPostings::new(v.to_vec()))
    }

    #[test]
    fn list_and_big_endian_seek() {
        let mut p = ListPostings::new(vec![2, 4, 6]);
        assert!(p.seek(3));
        assert_eq!(p.at(), 4);
        assert!(p.seek(4));
        assert_eq!(p.at(), 4);
        assert!(p.next());
        assert_eq!(p.at(), 6);
        assert!(!p.seek(7));
        let bytes: Vec<u8> = [2u32, 4, 6].iter().flat_map(|x| x.to_be_bytes()).collect();
        let mut b = BigEndianPostings::new(&bytes);
        assert!(b.seek(5));
        assert_eq!(b.at(), 6);
        assert!(!b.next());
        assert_eq!(collect(BigEndianPostings::new(&bytes)), vec![2, 4, 6]);
    }

    #[test]
    fn set_operations() {
        assert_eq!(
            collect(intersect(vec![
                l(&[1, 2, 3, 5, 8]),
                l(&[2, 3, 8, 9]),
                l(&[0, 3, 8])
            ])),
            vec![3, 8]
        );
        assert_eq!(
            collect(merge(vec![l(&[1, 5]), l(&[2, 5, 7]), l(&[])])),
            vec![1, 2, 5, 7]
        );
        assert_eq!(
            collect(without(l(&[1, 2, 3, 4, 5]), l(&[2, 4, 9]))),
            vec![1, 3, 5]
        );
        assert_eq!(collect(intersect(vec![])), Vec::<u64>::new());
        let mut m = merge(vec![l(&[1, 5, 9]), l(&[2, 6])]);
        assert!(m.seek(5));
        assert_eq!(m.at(), 5);
        assert!(m.next());
        assert_eq!(m.at(), 6);
        let mut w = without(l(&[1, 2, 3, 4]), l(&[3]));
        assert!(w.seek(3));
        assert_eq!(w.at(), 4);
    }

    #[test]
    fn random_set_operations_match_naive() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let mk = |rng: &mut rand::rngs::ThreadRng| {
                let mut v: Vec<u64> = (0..rng.gen_range(0..30))
                    .map(|_| rng.gen_range(0..50))
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            let (a, b) = (mk(&mut rng), mk(&mut rng));
            let inter: Vec<u64> = a.iter().copied().filter(|x| b.contains(x)).collect();
            let mut uni: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
            uni.sort();
            uni.dedup();
            let diff: Vec<u64> = a.iter().copied().filter(|x| !b.contains(x)).collect();
            assert_eq!(collect(intersect(vec![l(&a), l(&b)])), inter);
            assert_eq!(collect(merge(vec![l(&a), l(&b)])), uni);
            assert_eq!(collect(without(l(&a), l(&b))), diff);
        }
    }
}
