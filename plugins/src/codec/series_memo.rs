//! What was made of a series' key as written (a line's measurement and tags), found again
//! by that key: most lines a listener gets repeat a few series, and finding one costs less
//! than taking its tags apart, checking and copying them again. The record writer keeps the
//! series of a listener's lines here (see `record::Writer::find_known`).
//!
//! Bounded: emptied when full. A table that fills up without paying (fewer lookups found a
//! series than it held, as when every line is a series of its own) is not used for a while,
//! so such a load pays for a few thousand lookups and then for none. So it pays only where
//! it lives long: a table per parse of a chunk of 1,000 lines would pay for every lookup of
//! a load whose series come once per chunk, and never rest.

use super::slots::Slots;
use super::wire::hash_bytes;

pub struct SeriesMemo<V> {
    /// The keys, back to back.
    keys: Vec<u8>,
    /// Each entry's key hash, where its key is in `keys`, and its value.
    entries: Vec<(u64, [u32; 2], V)>,
    slots: Slots,
    /// Lookups that found a series since the table was last emptied.
    hits: usize,
    /// Lookups still to skip (see [`SeriesMemo::looking`]).
    rest: usize,
}

/// A key [`SeriesMemo::find`] did not find: where it would go.
pub struct Miss {
    hash: u64,
    slot: Option<usize>,
}

/// Series kept at most, and the longest key kept.
pub const MAX_SERIES: usize = 2048;
pub const MAX_KEY: usize = 256;
/// Lookups skipped after a table filled up without paying.
pub const REST: usize = 16 * MAX_SERIES;

impl<V> Default for SeriesMemo<V> {
    fn default() -> Self {
        SeriesMemo {
            keys: Vec::new(),
            entries: Vec::new(),
            slots: Slots::default(),
            hits: 0,
            rest: 0,
        }
    }
}

impl<V> SeriesMemo<V> {
    /// Whether to look this series up: false for a while after the table filled up without
    /// paying. Counts a lookup skipped.
    #[inline]
    pub fn looking(&mut self) -> bool {
        if self.rest == 0 {
            return true;
        }
        self.rest -= 1;
        false
    }

    /// The entry of `key`, else where it would go.
    #[inline]
    pub fn find(&mut self, key: &[u8]) -> Result<usize, Miss> {
        let hash = hash_bytes(key);
        if self.entries.is_empty() {
            // (The table may not be sized yet.)
            return Err(Miss { hash, slot: None });
        }
        let (keys, entries) = (&self.keys, &self.entries);
        match self.slots.find(hash, |i| {
            let (h, [s, e], _) = &entries[i];
            *h == hash && keys[*s as usize..*e as usize] == *key
        }) {
            Ok(i) => {
                self.hits += 1;
                Ok(i)
            }
            Err(slot) => Err(Miss {
                hash,
                slot: Some(slot),
            }),
        }
    }

    pub fn get(&self, i: usize) -> &V {
        &self.entries[i].2
    }

    pub fn get_mut(&mut self, i: usize) -> &mut V {
        &mut self.entries[i].2
    }

    /// Makes room for `key`, which `find` missed, emptying a full table first; `None` when
    /// it is not to be kept (too long, or the table is resting). Then [`SeriesMemo::insert`].
    pub fn room(&mut self, key: &[u8], miss: Miss) -> Option<Miss> {
        if key.len() > MAX_KEY || self.rest > 0 {
            return None;
        }
        let full = self.entries.len() >= MAX_SERIES;
        if full && self.hits < self.entries.len() {
            self.rest = REST;
        }
        if !full && !self.entries.is_empty() {
            return Some(miss);
        }
        // Emptied when full; sized when empty (a new table has no slots yet).
        self.forget();
        if self.rest > 0 {
            return None;
        }
        let slot = self.slots.find(miss.hash, |_| false).err();
        Some(Miss { slot, ..miss })
    }

    /// Keeps `value` under `key`, where [`SeriesMemo::room`] said.
    pub fn insert(&mut self, key: &[u8], at: Miss, value: V) {
        let start = self.keys.len() as u32;
        self.keys.extend_from_slice(key);
        self.entries
            .push((at.hash, [start, self.keys.len() as u32], value));
        let entries = &self.entries;
        let slot = at.slot.expect("room gives a slot");
        self.slots.insert(slot, entries.len() - 1, |i| entries[i].0);
    }

    /// Whether the table is empty (as after [`SeriesMemo::room`] emptied it).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the table, and looks up series again at once.
    pub fn clear(&mut self) {
        self.forget();
        self.rest = 0;
    }

    fn forget(&mut self) {
        self.keys.clear();
        self.entries.clear();
        self.slots.reset();
        self.hits = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks `i`'s key up as the record writer does: kept when missed. Whether it was found.
    fn seen(m: &mut SeriesMemo<usize>, i: usize) -> bool {
        let key = format!("m,i={i}");
        match m.find(key.as_bytes()) {
            Ok(e) => {
                assert_eq!(*m.get(e), i);
                true
            }
            Err(miss) => {
                if let Some(at) = m.room(key.as_bytes(), miss) {
                    m.insert(key.as_bytes(), at, i);
                }
                false
            }
        }
    }

    #[test]
    fn keeps_series_until_full_and_rests_when_that_does_not_pay() {
        let mut m = SeriesMemo::default();
        // Each series twice: the table pays for itself.
        for i in 0..MAX_SERIES {
            assert!(!seen(&mut m, i));
            assert!(seen(&mut m, i), "{i}");
        }
        // Full: the next new series empties it, and is kept.
        assert!(!seen(&mut m, MAX_SERIES) && !seen(&mut m, 0));
        assert!(seen(&mut m, MAX_SERIES) && seen(&mut m, 0));
        // A key too long to keep.
        let long = "k".repeat(MAX_KEY + 1);
        let miss = m.find(long.as_bytes()).unwrap_err();
        assert!(m.room(long.as_bytes(), miss).is_none());
        // Filled by series seen once each: no lookups for a while, then again.
        m.clear();
        for i in 0..=MAX_SERIES {
            assert!(m.looking());
            assert!(!seen(&mut m, 10_000 + i));
        }
        assert!(m.is_empty());
        for _ in 0..REST {
            assert!(!m.looking());
        }
        assert!(m.looking());
        assert!(!seen(&mut m, 0) && seen(&mut m, 0));
        // Emptied on demand, looking at once.
        for i in 0..=MAX_SERIES {
            seen(&mut m, 20_000 + i);
        }
        assert!(!m.looking());
        m.clear();
        assert!(m.looking() && m.is_empty());
    }
}
