//! The flow table's index: open addressing with linear probing over 8-byte slots (32-bit hash
//! tag + slab slot number), so that finding a flow costs one mostly cache-resident probe plus
//! the visit to the flow itself (which is needed anyway), instead of a general hash map's
//! control bytes and 48-byte buckets. Deletion shifts later entries back, so there are no
//! tombstones and lookups stay short. The index grows by doubling, and the flow table never
//! holds more than `--session-limit` flows.

/// A hint to the CPU to start loading the cache line at `p` (no effect on results).
#[inline(always)]
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

pub struct FlowIndex {
    slots: Vec<u64>,
    mask: usize,
    len: usize,
}

impl FlowIndex {
    pub fn new() -> FlowIndex {
        FlowIndex {
            slots: vec![0; 1024],
            mask: 1023,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn tag(hash: u64) -> u32 {
        // A final avalanche (splitmix64's) so that every input bit reaches the bits used for
        // the home slot: linear probing clusters badly on a weakly mixed hash.
        let mut z = hash;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z = z ^ (z >> 31);
        (z >> 32) as u32
    }

    /// The slot number of the entry with `hash` for which `eq` holds.
    #[inline]
    pub fn get(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = Self::tag(hash);
        let mut i = tag as usize & self.mask;
        loop {
            let e = self.slots[i];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == tag {
                let idx = (e as u32) - 1;
                if eq(idx) {
                    return Some(idx);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    pub fn insert(&mut self, hash: u64, idx: u32) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        Self::put(
            &mut self.slots,
            self.mask,
            (Self::tag(hash) as u64) << 32 | (idx as u64 + 1),
        );
        self.len += 1;
    }

    fn put(slots: &mut [u64], mask: usize, e: u64) {
        let mut i = (e >> 32) as usize & mask;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = e;
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let mut slots = vec![0u64; n];
        for &e in self.slots.iter().filter(|e| **e != 0) {
            Self::put(&mut slots, n - 1, e);
        }
        self.slots = slots;
        self.mask = n - 1;
    }

    /// Starts loading the slot where an entry with `hash` would start its probe.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let i = Self::tag(hash) as usize & self.mask;
        prefetch(&self.slots[i] as *const u64 as *const u8);
    }

    /// Removes the entry of slab slot `idx` (inserted with `hash`).
    pub fn remove(&mut self, hash: u64, idx: u32) {
        let tag = Self::tag(hash);
        let want = (tag as u64) << 32 | (idx as u64 + 1);
        let mut i = tag as usize & self.mask;
        loop {
            let e = self.slots[i];
            if e == 0 {
                return;
            }
            if e == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.len -= 1;
        // Backward-shift deletion: move later entries of the run into the hole when their home
        // slot does not lie cyclically in (hole, their position].
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.slots[j];
            if e == 0 {
                self.slots[i] = 0;
                return;
            }
            let home = (e >> 32) as usize & self.mask;
            let stays = if i <= j {
                home > i && home <= j
            } else {
                home > i || home <= j
            };
            if !stays {
                self.slots[i] = e;
                i = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_with_collisions_and_growth() {
        let mut ix = FlowIndex::new();
        // Hashes whose tags collide in the low bits (same home slot), and many more to grow.
        let h = |k: u64| ((k % 7) << 32 | k) ^ (k << 45);
        let n = 5000u64;
        for k in 0..n {
            ix.insert(h(k), k as u32);
        }
        assert_eq!(ix.len(), n as usize);
        for k in 0..n {
            assert_eq!(ix.get(h(k), |i| i == k as u32), Some(k as u32));
        }
        for k in (0..n).filter(|k| k % 3 == 0) {
            ix.remove(h(k), k as u32);
        }
        for k in 0..n {
            let want = (k % 3 != 0).then_some(k as u32);
            assert_eq!(ix.get(h(k), |i| i == k as u32), want, "key {k}");
        }
    }
}
