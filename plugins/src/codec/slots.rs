//! A small open-addressing hash table over entries kept elsewhere, for the lookups of the
//! binary encoders (the buffer record's tag sets, remote write's series).

/// Open addressing over entries kept in a `Vec` elsewhere: each slot holds an entry's index
/// + 1, or 0 when empty; at most half of the slots are used.
#[derive(Default)]
pub(crate) struct Slots {
    slots: Vec<u32>,
    used: usize,
}

impl Slots {
    /// Empties the table, sized for what was last put in it (grown as needed): tables sized
    /// for an entry per metric of a batch outgrew the L1 cache, and their probes were the
    /// remote-write encoder's hottest instructions. Not kept far larger than that either:
    /// the record encoder clears its table for every record.
    pub(crate) fn reset(&mut self) {
        let want = (self.used * 2).next_power_of_two().max(64);
        if self.slots.len() < want || self.slots.len() > want * 8 {
            self.slots = vec![0; want];
        } else {
            self.slots.fill(0);
        }
        self.used = 0;
    }

    /// The entry with this `hash` that `is` accepts, else the slot to insert it at.
    #[inline]
    pub(crate) fn find(
        &self,
        hash: u64,
        mut is: impl FnMut(usize) -> bool,
    ) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            match self.slots[slot] {
                0 => return Err(slot),
                i if is(i as usize - 1) => return Ok(i as usize - 1),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// Puts entry `index` (the next one: entries are numbered from 0) at `slot`, as `find`
    /// said; `hash_of` gives any entry's hash, to grow the table.
    pub(crate) fn insert(&mut self, slot: usize, index: usize, hash_of: impl Fn(usize) -> u64) {
        self.slots[slot] = index as u32 + 1;
        self.used += 1;
        if self.used * 2 > self.slots.len() {
            let len = self.slots.len() * 2;
            self.slots = vec![0; len];
            for i in 0..self.used {
                let mut slot = hash_of(i) as usize & (len - 1);
                while self.slots[slot] != 0 {
                    slot = (slot + 1) & (len - 1);
                }
                self.slots[slot] = i as u32 + 1;
            }
        }
    }
}
