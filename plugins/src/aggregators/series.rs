//! Per-series state for aggregators, looked up without cloning the metric's name and tags.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use crate::model::{Metric, Str};

/// One series' name, tags and aggregation state.
pub struct Entry<T> {
    pub name: Str,
    pub tags: Vec<(Str, Str)>,
    pub state: T,
}

/// Series (name + tags) to state, in first-seen order so pushes are deterministic.
pub struct SeriesMap<T> {
    hasher: RandomState,
    /// Hash of name+tags to indexes into `entries` (a list because hashes can collide).
    index: HashMap<u64, Vec<usize>>,
    entries: Vec<Entry<T>>,
}

impl<T> Default for SeriesMap<T> {
    fn default() -> Self {
        SeriesMap {
            hasher: RandomState::new(),
            index: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<T> SeriesMap<T> {
    /// The state of `m`'s series, created with `init` the first time the series is seen.
    pub fn get_or_insert_with(&mut self, m: &Metric, init: impl FnOnce() -> T) -> &mut T {
        let h = self.hasher.hash_one((&m.name, &m.tags));
        let slot = self.index.entry(h).or_default();
        let found = slot.iter().copied().find(|&i| {
            let e = &self.entries[i];
            e.name == m.name && e.tags == m.tags
        });
        let i = match found {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    name: m.name.clone(),
                    tags: m.tags.clone(),
                    state: init(),
                });
                slot.push(self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].state
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry<T>> {
        self.entries.iter()
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }
}

/// A field value as a float for numeric aggregation, as Telegraf's aggregators do:
/// floats and integers count, booleans and strings are ignored.
pub fn numeric(v: &crate::FieldValue) -> Option<f64> {
    use crate::FieldValue::*;
    match *v {
        Float(x) => Some(x),
        Int(x) => Some(x as f64),
        UInt(x) => Some(x as f64),
        Bool(_) | String(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_series_shares_state_and_order_is_first_seen() {
        let mut map: SeriesMap<u32> = SeriesMap::default();
        let a = Metric::new("m", 0).with_tag("host", "a");
        let b = Metric::new("m", 0).with_tag("host", "b");
        *map.get_or_insert_with(&b, || 0) += 1;
        *map.get_or_insert_with(&a, || 0) += 1;
        *map.get_or_insert_with(&b, || 0) += 1;
        let got: Vec<_> = map
            .iter()
            .map(|e| (e.tags[0].1.as_str(), e.state))
            .collect();
        assert_eq!(got, vec![("b", 2), ("a", 1)]);
        map.clear();
        assert_eq!(map.iter().count(), 0);
    }
}
