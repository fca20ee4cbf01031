//! The buffer record: a batch of metrics in a compact binary form. Output buffers keep
//! records instead of live `Metric`s (a live metric costs several allocations and about
//! three times its encoded size), and the disk buffer writes the same records to its segment
//! files, so memory and disk buffering are one format.
//!
//! ```text
//! record := varint(count) metric*
//! metric := flags:u8 [name] varint(zigzag(time - previous time)) [tags] varint(nfields) field*
//! tags   := varint(keys_len << 1) key* varint(values_len) value*  (keys written)
//!         | varint(1) varint(values_len) value*                   (keys as last written)
//!         | varint(tag set number)                                (flag bit 3)
//!         | varint(ntags) (str str)*                              (older records)
//! field  := [key:str] type:u8 value
//! key, value, str := varint(len) utf8
//! ```
//! A record may instead be `0x80 0x00 varint(count) snappy(record)`: a plain record,
//! compressed. `0x80 0x00` is a varint no encoder writes (a second spelling of 0), so the two
//! kinds cannot be confused, and plain records written before compression existed still read.
//!
//! `flags` bits 0–2 say that the name, the tag set or the field keys equal those of the
//! previous metric and are left out (metrics of one batch usually share them). Bit 3 says
//! that the tag set is one written in full earlier in the record, given by its number (tag
//! sets written in full are numbered from 0 in order): a batch of many series repeats its tag
//! sets, though rarely in a row. Bits 4–6 hold the value type. Bit 7 says that the tag set is
//! written in full as its keys, then its values, each list prefixed by its length in bytes;
//! the keys are left out (`varint(1)`) when they equal those of the last tag set that wrote
//! its keys: the many series of one batch usually differ only in their tag values. Records
//! written before bit 7 existed interleave keys and values, and still read. Field types: 0
//! float (8 bytes LE), 1 int (zigzag varint), 2 uint (varint), 3 false, 4 true, 5 string.

use std::sync::Arc;

use super::series_memo::{Miss, SeriesMemo};
use super::slots::Slots;
use super::wire::{extend_short, hash_bytes, put_varint};
use crate::model::{FieldValue, Metric, Str, ValueType, str_eq, str_from, str_words};

const SAME_NAME: u8 = 1;
const SAME_TAGS: u8 = 2;
const SAME_FIELD_KEYS: u8 = 4;
const TAGS_REF: u8 = 8;
const TAGS_SPLIT: u8 = 0x80;
/// The value type's bits in `flags`.
const KIND_SHIFT: u8 = 4;
const KIND_MASK: u8 = 7;

/// Why a record could not be decoded (only corrupt or truncated bytes get here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt buffer record: {0}")]
pub struct RecordError(&'static str);

/// Appends the record of `metrics` to `out`.
pub fn encode(metrics: &[Metric], out: &mut Vec<u8>) {
    TAG_SETS.with_borrow_mut(|sets| encode_with(metrics, out, sets));
}

fn encode_with(metrics: &[Metric], out: &mut Vec<u8>, sets: &mut TagSets) {
    put_varint(out, metrics.len() as u64);
    sets.reset();
    let mut prev: Option<&Metric> = None;
    // The number of the previous metric's tag set.
    let mut in_force = usize::MAX;
    for (i, m) in metrics.iter().enumerate() {
        let same_name = prev.is_some_and(|p| str_eq(&p.name, &m.name));
        let same_keys = prev.is_some_and(|p| keys_equal(&p.fields, &m.fields));
        let flags_at = out.len();
        out.push(
            (same_name as u8 * SAME_NAME)
                | (same_keys as u8 * SAME_FIELD_KEYS)
                | (kind_code(m.kind) << KIND_SHIFT),
        );
        if !same_name {
            put_str(out, &m.name);
        }
        let prev_time = prev.map_or(0, |p| p.time);
        put_varint(out, zigzag(m.time.wrapping_sub(prev_time)));
        // A tag set written before is found by a hash of its strings (not of bytes written
        // just now: reading those back stalls on store forwarding).
        let hash = hash_tags(&m.tags);
        match sets.find(hash, |owner| same_tags(&metrics[owner].tags, &m.tags)) {
            Ok(number) if number == in_force => out[flags_at] |= SAME_TAGS,
            Ok(number) => {
                out[flags_at] |= TAGS_REF;
                put_varint(out, number as u64);
                in_force = number;
            }
            Err(slot) => {
                out[flags_at] |= TAGS_SPLIT;
                match sets.keys_owner {
                    Some(o) if keys_equal(&metrics[o].tags, &m.tags) => out.push(1),
                    _ => {
                        put_strs(out, m.tags.iter().map(|(k, _)| k), 1);
                        sets.keys_owner = Some(i);
                    }
                }
                put_strs(out, m.tags.iter().map(|(_, v)| v), 0);
                in_force = sets.insert(slot, hash, i);
            }
        }
        put_varint(out, m.fields.len() as u64);
        for (k, v) in &m.fields {
            if !same_keys {
                put_str(out, k);
            }
            put_value(out, v);
        }
        prev = Some(m);
    }
}

/// The tag sets an encoder has written in full in the record, numbered in order, found by
/// their hash (kept per thread, as the snappy encoder, to allocate once).
#[derive(Default)]
struct TagSets {
    /// Each set's hash and the metric (its index in the batch) that wrote it.
    sets: Vec<(u64, usize)>,
    slots: Slots,
    /// The metric whose tag keys were written last.
    keys_owner: Option<usize>,
}

impl TagSets {
    fn reset(&mut self) {
        self.sets.clear();
        self.slots.reset();
        self.keys_owner = None;
    }

    /// The number of the set with `hash` that `is` (given the metric that wrote it) accepts,
    /// else the slot to insert it at.
    #[inline]
    fn find(&self, hash: u64, is: impl Fn(usize) -> bool) -> Result<usize, usize> {
        self.slots.find(hash, |i| {
            let (h, owner) = self.sets[i];
            h == hash && is(owner)
        })
    }

    /// Adds the set that metric `owner` wrote in `slot` (as `find` said); returns its number.
    fn insert(&mut self, slot: usize, hash: u64, owner: usize) -> usize {
        self.sets.push((hash, owner));
        let sets = &self.sets;
        self.slots.insert(slot, sets.len() - 1, |i| sets[i].0);
        sets.len() - 1
    }
}

/// A hash of a tag set's strings, from their words (see `str_words`): a few instructions a
/// string, where hashing their bytes cost a branch and a loop each. A set whose strings are
/// equal but not word for word gets another hash, and is written again: never confused.
#[inline]
fn hash_tags(tags: &[(Str, Str)]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = tags.len() as u64;
    for (k, v) in tags {
        for s in [k, v] {
            let [a, b, c] = str_words(s);
            h = (h.rotate_left(5) ^ a ^ b.rotate_left(21) ^ c.rotate_left(42)).wrapping_mul(K);
        }
    }
    // The table uses the low bits: fold the well-mixed high bits down.
    h ^ (h >> 29)
}

/// Whether two lists of tags or fields have the same keys in the same order.
#[inline]
fn keys_equal<V>(a: &[(Str, V)], b: &[(Str, V)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| str_eq(&x.0, &y.0))
}

/// `a == b` for tag sets, quickest when they are equal.
#[inline]
fn same_tags(a: &[(Str, Str)], b: &[(Str, Str)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ak, av), (bk, bv))| str_eq(ak, bk) && str_eq(av, bv))
}

/// One encoded batch and the number of metrics in it. Cheap to clone: outputs that take a
/// batch unchanged share one record.
#[derive(Clone, Debug)]
pub struct Record {
    pub data: Arc<[u8]>,
    pub count: u32,
}

impl Record {
    /// Encodes `metrics` into plain records of at most `chunk` metrics each. An output
    /// buffer compresses the ones it keeps for longer: one that is written soon after it
    /// arrives is not worth compressing and decompressing again.
    pub fn encode_chunks(metrics: &[Metric], chunk: usize) -> Vec<Record> {
        let chunk = chunk.max(1);
        // Most metrics take 30-60 bytes: start near the size instead of doubling from empty
        // a dozen times (each a copy of all written so far).
        let mut scratch = Vec::with_capacity(metrics.len().min(chunk) * 48);
        metrics
            .chunks(chunk)
            .map(|c| {
                scratch.clear();
                encode(c, &mut scratch);
                Record {
                    data: Arc::from(&scratch[..]),
                    count: c.len() as u32,
                }
            })
            .collect()
    }

    /// The record compressed, where that pays (see [`compress`]); else itself.
    pub fn compressed(self, scratch: &mut Vec<u8>) -> Record {
        scratch.clear();
        if !compress(&self.data, scratch) {
            return self;
        }
        Record {
            data: Arc::from(&scratch[..]),
            count: self.count,
        }
    }
}

/// Writes a record a metric at a time from borrowed parts, for a source that has the parts
/// but no [`Metric`] (a listener parsing line protocol straight into records). What it
/// writes reads back as [`encode`]'s records do, with the same sharing of names, tag sets and
/// keys; the earlier tag sets it compares with are read from what it wrote.
pub struct Writer {
    /// [`HEAD`] bytes kept for the count, then the metrics written since the last
    /// [`Writer::take_record`].
    body: Vec<u8>,
    count: usize,
    /// Of the previous metric: its name, its time, and its field keys as written.
    prev_name: Vec<u8>,
    prev_time: i64,
    prev_keys: Vec<u8>,
    /// Scratch: this metric's field keys, and its tag set's two lists, as written.
    keys: Vec<u8>,
    tag_keys: Vec<u8>,
    tag_values: Vec<u8>,
    /// Every tag set written in full, numbered in order: its hash and where its keys and
    /// its values are in `body` (keys left out as the last written are found there too).
    sets: Vec<(u64, [u32; 4])>,
    slots: Slots,
    /// The set whose keys were written last, and the set of the previous metric.
    keys_owner: Option<usize>,
    in_force: usize,
    /// The hash of the previous metric's tag set.
    set_hash: u64,
    /// Records started so far: which record a known series' set number belongs to.
    records: u64,
    /// Series written before, found by a key of the caller's: a listener keys them by a
    /// line's measurement and tags as written, so a line of a series it has seen is written
    /// without taking its tags apart, copying and hashing them again. Kept across records;
    /// forgotten when the caller's context changes (see [`Writer::known_under`]).
    known: SeriesMemo<KnownSeries>,
    /// Their names and tag sets (keys, values) as a record has them, back to back.
    known_text: Vec<u8>,
    known_context: Vec<u8>,
}

#[derive(Clone, Copy)]
struct KnownSeries {
    /// The hash of its tag set, as `push` has it.
    set_hash: u64,
    /// Where its name, tag keys and tag values start in `known_text`, and where they end.
    at: [u32; 4],
    /// The number of its tag set in record `record`, when that one is being written.
    record: u64,
    number: usize,
}

/// Room kept before a [`Writer`]'s metrics for the longest count.
const HEAD: usize = 10;

impl Default for Writer {
    fn default() -> Self {
        let mut w = Writer {
            body: Vec::new(),
            count: 0,
            prev_name: Vec::new(),
            prev_time: 0,
            prev_keys: Vec::new(),
            keys: Vec::new(),
            tag_keys: Vec::new(),
            tag_values: Vec::new(),
            sets: Vec::new(),
            slots: Slots::default(),
            keys_owner: None,
            in_force: usize::MAX,
            set_hash: 0,
            records: 0,
            known: SeriesMemo::default(),
            known_text: Vec::new(),
            known_context: Vec::new(),
        };
        w.reset();
        w
    }
}

impl Writer {
    /// Metrics written since the last [`Writer::take_record`].
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a metric. `tags` must be sorted by key, without repeats (as a [`Metric`]'s are),
    /// and `fields` non-empty.
    pub fn push<K, V, F>(
        &mut self,
        name: &str,
        tags: &[(K, V)],
        fields: &[(F, FieldValue)],
        time: i64,
        kind: ValueType,
    ) where
        K: AsRef<str>,
        V: AsRef<str>,
        F: AsRef<str>,
    {
        self.tag_keys.clear();
        self.tag_values.clear();
        for (k, v) in tags {
            put_str(&mut self.tag_keys, k.as_ref());
            put_str(&mut self.tag_values, v.as_ref());
        }
        let hash = hash_bytes(&self.tag_keys) ^ hash_bytes(&self.tag_values).rotate_left(31);
        let found = self.find_set(hash);
        self.write(name.as_bytes(), hash, found, fields, time, kind);
    }

    /// Forgets the known series (see [`Writer::remember`]) unless `context`, what else
    /// decides their tags (tags the caller adds to each metric), is what they were made under.
    pub fn known_under(&mut self, context: &[u8]) {
        if self.known_context != context {
            self.known.clear();
            self.known_context.clear();
            self.known_context.extend_from_slice(context);
        }
    }

    /// Whether to look series up now (see [`SeriesMemo::looking`]).
    #[inline]
    pub fn remembering(&mut self) -> bool {
        self.known.looking()
    }

    /// The series remembered under `key`, for [`Writer::push_known`]; else where to
    /// [`Writer::remember`] it.
    #[inline]
    pub fn find_known(&mut self, key: &[u8]) -> Result<usize, Miss> {
        self.known.find(key)
    }

    /// Remembers the name and tag set of the metric last pushed under `key`, which
    /// [`Writer::find_known`] did not find.
    pub fn remember(&mut self, key: &[u8], miss: Miss) {
        if self.count == 0 {
            return;
        }
        let Some(at) = self.known.room(key, miss) else {
            return;
        };
        if self.known.is_empty() {
            self.known_text.clear();
        }
        let text = &mut self.known_text;
        let mut ends = [text.len() as u32; 4];
        for (i, part) in [&self.prev_name, &self.tag_keys, &self.tag_values]
            .into_iter()
            .enumerate()
        {
            text.extend_from_slice(part);
            ends[i + 1] = text.len() as u32;
        }
        let series = KnownSeries {
            set_hash: self.set_hash,
            at: ends,
            record: self.records,
            number: self.in_force,
        };
        self.known.insert(key, at, series);
    }

    /// Adds a metric of the series `find_known` found, with these fields (as [`Writer::push`]).
    pub fn push_known<F: AsRef<str>>(
        &mut self,
        series: usize,
        fields: &[(F, FieldValue)],
        time: i64,
        kind: ValueType,
    ) {
        let e = *self.known.get(series);
        let text = std::mem::take(&mut self.known_text);
        let part = |i: usize| &text[e.at[i] as usize..e.at[i + 1] as usize];
        let found = if e.record == self.records {
            Ok(e.number)
        } else {
            // Its set's number in an earlier record: found or written in this one.
            self.tag_keys.clear();
            self.tag_keys.extend_from_slice(part(1));
            self.tag_values.clear();
            self.tag_values.extend_from_slice(part(2));
            self.find_set(e.set_hash)
        };
        self.write(part(0), e.set_hash, found, fields, time, kind);
        self.known_text = text;
        let e = self.known.get_mut(series);
        (e.record, e.number) = (self.records, self.in_force);
    }

    /// The number of the tag set in `tag_keys` and `tag_values` (of hash `hash`) if this
    /// record has it, else the slot to insert it at.
    #[inline]
    fn find_set(&self, hash: u64) -> Result<usize, usize> {
        let (body, sets) = (&self.body, &self.sets);
        let (tag_keys, tag_values) = (&self.tag_keys[..], &self.tag_values[..]);
        let at = |r: [u32; 4], i: usize| &body[r[i] as usize..r[i + 1] as usize];
        self.slots.find(hash, |i| {
            let (h, r) = sets[i];
            h == hash && bytes_eq(at(r, 0), tag_keys) && bytes_eq(at(r, 2), tag_values)
        })
    }

    /// Writes a metric whose tag set (in `tag_keys` and `tag_values`) `find_set` found.
    #[inline]
    fn write<F: AsRef<str>>(
        &mut self,
        name: &[u8],
        hash: u64,
        found: Result<usize, usize>,
        fields: &[(F, FieldValue)],
        time: i64,
        kind: ValueType,
    ) {
        let first = self.count == 0;
        self.keys.clear();
        for (k, _) in fields {
            put_str(&mut self.keys, k.as_ref());
        }
        let same_name = !first && bytes_eq(&self.prev_name, name);
        let same_keys = !first && bytes_eq(&self.prev_keys, &self.keys);
        let keys_again = found.is_err()
            && self.keys_owner.is_some_and(|o| {
                let r = self.sets[o].1;
                bytes_eq(&self.body[r[0] as usize..r[1] as usize], &self.tag_keys)
            });

        let out = &mut self.body;
        let flags_at = out.len();
        out.push(
            (same_name as u8 * SAME_NAME)
                | (same_keys as u8 * SAME_FIELD_KEYS)
                | (kind_code(kind) << KIND_SHIFT),
        );
        if !same_name {
            put_varint(out, name.len() as u64);
            extend_short(out, name);
            self.prev_name.clear();
            self.prev_name.extend_from_slice(name);
        }
        let prev_time = if first { 0 } else { self.prev_time };
        put_varint(out, zigzag(time.wrapping_sub(prev_time)));
        self.prev_time = time;
        self.set_hash = hash;
        match found {
            Ok(number) if !first && number == self.in_force => out[flags_at] |= SAME_TAGS,
            Ok(number) => {
                out[flags_at] |= TAGS_REF;
                put_varint(out, number as u64);
                self.in_force = number;
            }
            Err(slot) => {
                out[flags_at] |= TAGS_SPLIT;
                let keys = match self.keys_owner {
                    Some(o) if keys_again => {
                        out.push(1);
                        [self.sets[o].1[0], self.sets[o].1[1]]
                    }
                    _ => {
                        put_varint(out, (self.tag_keys.len() as u64) << 1);
                        let start = out.len() as u32;
                        extend_short(out, &self.tag_keys);
                        self.keys_owner = Some(self.sets.len());
                        [start, out.len() as u32]
                    }
                };
                put_varint(out, self.tag_values.len() as u64);
                let start = out.len() as u32;
                extend_short(out, &self.tag_values);
                self.sets
                    .push((hash, [keys[0], keys[1], start, out.len() as u32]));
                let sets = &self.sets;
                self.slots.insert(slot, sets.len() - 1, |i| sets[i].0);
                self.in_force = sets.len() - 1;
            }
        }
        put_varint(out, fields.len() as u64);
        for (k, v) in fields {
            if !same_keys {
                put_str(out, k.as_ref());
            }
            put_value(out, v);
        }
        std::mem::swap(&mut self.prev_keys, &mut self.keys);
        self.count += 1;
    }

    /// The record of the metrics written since the last call (none if there were none),
    /// and starts the next record.
    pub fn take_record(&mut self) -> Option<Record> {
        if self.count == 0 {
            return None;
        }
        let mut head = Vec::with_capacity(HEAD);
        put_varint(&mut head, self.count as u64);
        let from = HEAD - head.len();
        self.body[from..HEAD].copy_from_slice(&head);
        let record = Record {
            data: Arc::from(&self.body[from..]),
            count: self.count as u32,
        };
        self.reset();
        Some(record)
    }

    fn reset(&mut self) {
        self.body.clear();
        self.body.resize(HEAD, 0);
        self.count = 0;
        self.sets.clear();
        self.slots.reset();
        self.keys_owner = None;
        self.in_force = usize::MAX;
        self.records += 1;
    }
}

/// `a == b`, without a call for the short strings of names, keys and tag sets.
#[inline(always)]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    use super::wire::load_le;
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=8 => load_le(a) == load_le(b),
        9..=16 => {
            load_le(&a[..8]) == load_le(&b[..8]) && load_le(&a[n - 8..]) == load_le(&b[n - 8..])
        }
        17..=32 => {
            let w = |s: &[u8], at: usize| load_le(&s[at..at + 8]);
            w(a, 0) == w(b, 0)
                && w(a, 8) == w(b, 8)
                && w(a, n - 16) == w(b, n - 16)
                && w(a, n - 8) == w(b, n - 8)
        }
        _ => a == b,
    }
}

/// A field's type byte and value.
#[inline]
fn put_value(out: &mut Vec<u8>, v: &FieldValue) {
    match v {
        FieldValue::Float(f) => {
            out.push(0);
            out.extend_from_slice(&f.to_le_bytes());
        }
        FieldValue::Int(i) => {
            out.push(1);
            put_varint(out, zigzag(*i));
        }
        FieldValue::UInt(u) => {
            out.push(2);
            put_varint(out, *u);
        }
        FieldValue::Bool(b) => out.push(3 + *b as u8),
        FieldValue::String(s) => {
            out.push(5);
            put_str(out, s);
        }
    }
}

/// The first bytes of a compressed record.
const COMPRESSED: [u8; 2] = [0x80, 0x00];
/// Plain records shorter than this are kept as they are: too little to gain.
const MIN_COMPRESS: usize = 512;

/// Appends the record of `metrics` to `out`, snappy-compressed when that saves at least a
/// quarter of its size (see [`compress`]). `plain` is scratch space.
// Never inlined: its callers are in the agent crate, built for size; this stays at -O3.
#[inline(never)]
pub fn encode_compressed(metrics: &[Metric], out: &mut Vec<u8>, plain: &mut Vec<u8>) {
    plain.clear();
    // Most metrics take 30-60 bytes: start near the size instead of doubling from empty a
    // dozen times (each a copy of all written so far).
    plain.reserve(metrics.len() * 32);
    encode(metrics, plain);
    if !compress(plain, out) {
        out.extend_from_slice(plain);
    }
}

/// Appends the compressed form of the plain record `plain` to `out` when that saves at
/// least a quarter of its size; returns whether it did (else `out` is unchanged). A batch of
/// similar metrics (one request to a listener, one input's gather) usually shrinks two to
/// four times: names, tag sets and keys repeat across it.
#[inline(never)]
pub fn compress(plain: &[u8], out: &mut Vec<u8>) -> bool {
    if plain.len() < MIN_COMPRESS || plain.starts_with(&COMPRESSED) {
        return false;
    }
    let Ok(n) = count(plain) else {
        return false;
    };
    let start = out.len();
    out.extend_from_slice(&COMPRESSED);
    put_varint(out, n as u64);
    let max = snap::raw::max_compress_len(plain.len());
    let copied = PACKED.with_borrow_mut(|packed| {
        // Grown, never cleared (as `PLAIN`): the compressed bytes, about a third of the
        // plain ones, are copied out instead of zeroing room for the worst case each time.
        if packed.len() < max {
            packed.resize(max, 0);
        }
        let n = SNAPPY
            .with_borrow_mut(|enc| enc.compress(plain, &mut packed[..max]))
            .ok()?;
        (n < plain.len() - plain.len() / 4).then(|| out.extend_from_slice(&packed[..n]))
    });
    if copied.is_none() {
        out.truncate(start);
    }
    copied.is_some()
}

thread_local! {
    /// Snappy's encoder keeps a hash table: one per thread, not one per record.
    static SNAPPY: std::cell::RefCell<snap::raw::Encoder> =
        std::cell::RefCell::new(snap::raw::Encoder::new());
    /// The decompressed record being decoded.
    static PLAIN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The compressed record being encoded.
    static PACKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The tag sets of the record being encoded.
    static TAG_SETS: std::cell::RefCell<TagSets> = std::cell::RefCell::new(TagSets::default());
}

/// The number of metrics a record holds, read from its first bytes.
pub fn count(record: &[u8]) -> Result<usize, RecordError> {
    let mut r = Reader {
        buf: record.strip_prefix(&COMPRESSED).unwrap_or(record),
    };
    let n = r.varint()?;
    usize::try_from(n).map_err(|_| RecordError("count too large"))
}

/// Decodes a record, appending its metrics to `out`. On error `out` is left as it was.
pub fn decode(record: &[u8], out: &mut Vec<Metric>) -> Result<(), RecordError> {
    decode_reusing(record, out, &mut Vec::new())
}

/// As [`decode`], but the metrics are built in `spare`'s metrics (taken from its end) where
/// it has any, so that their tag and field lists are reused instead of allocated: a writer
/// that gives each written batch back to `spare` decodes without allocating. On error the
/// metrics taken go back to `spare` and `out` is left as it was.
// Never inlined, as `encode_compressed`.
#[inline(never)]
pub fn decode_reusing(
    record: &[u8],
    out: &mut Vec<Metric>,
    spare: &mut Vec<Metric>,
) -> Result<(), RecordError> {
    let start = out.len();
    let result = decode_into(record, out, spare);
    if result.is_err() {
        spare.extend(out.drain(start..));
    }
    result
}

fn decode_into(
    record: &[u8],
    out: &mut Vec<Metric>,
    spare: &mut Vec<Metric>,
) -> Result<(), RecordError> {
    if !record.starts_with(&COMPRESSED) {
        return decode_plain(record, out, spare);
    }
    PLAIN.with_borrow_mut(|scratch| decode_plain(plain(record, scratch)?, out, spare))
}

/// The plain record of `record`: itself, or decompressed into `scratch`.
pub fn plain<'a>(record: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], RecordError> {
    let Some(packed) = record.strip_prefix(&COMPRESSED) else {
        return Ok(record);
    };
    let mut r = Reader { buf: packed };
    let n = r.varint()?;
    let len = snap::raw::decompress_len(r.buf).map_err(|_| RecordError("bad compression"))?;
    // Snappy expands at most 64 bytes per 2-byte copy: a larger claim is damage, and must not
    // allocate.
    if len > r.buf.len().saturating_mul(32) + 64 {
        return Err(RecordError("bad compression"));
    }
    // Grown, never cleared: zeroing the whole record's room for every decode cost more than
    // half as much as decompressing it.
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let plain = &mut scratch[..len];
    let written = snap::raw::Decoder::new()
        .decompress(r.buf, plain)
        .map_err(|_| RecordError("bad compression"))?;
    if written != len {
        return Err(RecordError("bad compression"));
    }
    if count(plain)? as u64 != n {
        return Err(RecordError("count differs from the compressed record's"));
    }
    Ok(plain)
}

fn decode_plain(
    record: &[u8],
    out: &mut Vec<Metric>,
    spare: &mut Vec<Metric>,
) -> Result<(), RecordError> {
    let mut r = Reader { buf: record };
    let n = r.varint()?;
    // Every metric takes at least 3 bytes: a hostile count must not reserve gigabytes.
    if n > (record.len() / 3) as u64 {
        return Err(RecordError("count larger than the record"));
    }
    out.reserve(n as usize);
    let first = out.len();
    let mut written = Written::default();
    for i in 0..n as usize {
        let flags = r.byte()?;
        if i == 0 && flags & (SAME_NAME | SAME_TAGS | SAME_FIELD_KEYS) != 0 {
            return Err(RecordError("first metric refers to a previous one"));
        }
        let mut m = spare.pop().unwrap_or_else(|| Metric::new("", 0));
        match decode_metric(&mut r, flags, &out[first..], &mut written, &mut m) {
            Ok(()) => out.push(m),
            Err(e) => {
                spare.push(m);
                return Err(e);
            }
        }
    }
    if !r.buf.is_empty() {
        return Err(RecordError("trailing bytes"));
    }
    Ok(())
}

/// Which of a record's metrics (by index) wrote what later ones refer to.
#[derive(Default)]
struct Written {
    /// Each tag set written in full.
    tag_sets: Vec<usize>,
    /// The last tag keys written.
    keys: Option<usize>,
}

/// Decodes the metric after `flags` into `m`, replacing what it held. `done` holds the
/// record's metrics before it.
fn decode_metric<'a>(
    r: &mut Reader<'a>,
    flags: u8,
    done: &[Metric],
    written: &mut Written,
    m: &mut Metric,
) -> Result<(), RecordError> {
    let prev = done.last();
    m.tags.clear();
    m.fields.clear();
    match prev {
        Some(p) if flags & SAME_NAME != 0 => m.name.clone_from(&p.name),
        // A spare metric's heap name keeps its allocation; an inline one is replaced.
        _ if m.name.is_heap_allocated() => {
            m.name.clear();
            m.name.push_str(r.str()?);
        }
        _ => m.name = str_from(r.str()?),
    }
    m.kind = kind_from((flags >> KIND_SHIFT) & KIND_MASK)?;
    m.time = prev
        .map_or(0, |p| p.time)
        .wrapping_add(unzigzag(r.varint()?));
    check_tag_flags(flags)?;
    match prev {
        _ if flags & TAGS_REF != 0 => {
            let owner = usize::try_from(r.varint()?)
                .ok()
                .and_then(|n| written.tag_sets.get(n))
                .ok_or(RecordError("tag set number out of range"))?;
            m.tags.extend_from_slice(&done[*owner].tags);
        }
        Some(p) if flags & SAME_TAGS != 0 => m.tags.extend_from_slice(&p.tags),
        _ if flags & TAGS_SPLIT != 0 => {
            written.tag_sets.push(done.len());
            match r.tag_keys()? {
                None => {
                    let owner = written.keys.ok_or(RecordError("tag keys refer to none"))?;
                    let keys = done[owner].tags.iter();
                    m.tags
                        .extend(keys.map(|(k, _)| (k.clone(), Str::default())));
                }
                Some(mut keys) => {
                    while !keys.buf.is_empty() {
                        m.tags.push((str_from(keys.str()?), Str::default()));
                    }
                    written.keys = Some(done.len());
                }
            }
            let mut values = r.prefixed()?;
            for (_, v) in &mut m.tags {
                *v = str_from(values.str()?);
            }
            if !values.buf.is_empty() {
                return Err(RecordError("more tag values than keys"));
            }
        }
        _ => {
            written.tag_sets.push(done.len());
            let nt = r.len_prefix(2)?;
            m.tags.reserve(nt);
            for _ in 0..nt {
                m.tags.push((str_from(r.str()?), str_from(r.str()?)));
            }
        }
    }
    let nf = r.len_prefix(1)?;
    let keys_from = match prev {
        Some(p) if flags & SAME_FIELD_KEYS != 0 => {
            if p.fields.len() != nf {
                return Err(RecordError("field count differs from the previous metric"));
            }
            Some(p)
        }
        _ => None,
    };
    m.fields.reserve(nf);
    for j in 0..nf {
        let key = match keys_from {
            Some(p) => p.fields[j].0.clone(),
            None => str_from(r.str()?),
        };
        m.fields.push((key, r.value()?.into()));
    }
    Ok(())
}

/// A field value borrowed from a record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldRef<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    String(&'a str),
}

impl From<FieldRef<'_>> for FieldValue {
    fn from(v: FieldRef<'_>) -> Self {
        match v {
            FieldRef::Float(x) => FieldValue::Float(x),
            FieldRef::Int(x) => FieldValue::Int(x),
            FieldRef::UInt(x) => FieldValue::UInt(x),
            FieldRef::Bool(x) => FieldValue::Bool(x),
            FieldRef::String(x) => FieldValue::String(str_from(x)),
        }
    }
}

/// The metrics of a plain record (see [`plain`]) one at a time, borrowed from its bytes: for
/// encoders that write straight from the buffer, without building `Metric`s. After
/// [`MetricsOf::advance`] returns true, the fields below hold the current metric.
pub struct MetricsOf<'a> {
    r: Reader<'a>,
    left: usize,
    first: bool,
    pub name: &'a str,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    pub kind: ValueType,
    /// Sorted by key, keys unique (as in `Metric`); read on demand ([`MetricsOf::read_tags`]).
    pub tags: Vec<(&'a str, &'a str)>,
    tags_read: bool,
    /// The tag set as the record holds it, its keys (`tag_keys`) and its values
    /// (`tag_bytes`): tag sets whose two slices hold equal bytes are equal, and a tag set the
    /// record refers to by number is the same slices each time. (In records written before
    /// keys and values were apart, `tag_keys` is empty and `tag_bytes` holds both.)
    pub tag_keys: &'a [u8],
    pub tag_bytes: &'a [u8],
    /// The number of that tag set in the record: tag sets of one number are equal.
    pub tag_set: usize,
    pub fields: Vec<(&'a str, FieldRef<'a>)>,
    /// The tag sets written in full so far, by number.
    tag_sets: Vec<(&'a [u8], &'a [u8])>,
    /// The last tag keys written.
    keys: Option<&'a [u8]>,
}

impl<'a> MetricsOf<'a> {
    pub fn new(plain: &'a [u8]) -> Result<Self, RecordError> {
        let mut r = Reader { buf: plain };
        let n = r.varint()?;
        if n > (plain.len() / 3) as u64 {
            return Err(RecordError("count larger than the record"));
        }
        Ok(MetricsOf {
            r,
            left: n as usize,
            first: true,
            name: "",
            time: 0,
            kind: ValueType::Untyped,
            tags: Vec::new(),
            tags_read: true,
            tag_keys: &[],
            tag_bytes: &[],
            tag_set: 0,
            fields: Vec::new(),
            tag_sets: Vec::new(),
            keys: None,
        })
    }

    /// Moves to the next metric; false after the last.
    pub fn advance(&mut self) -> Result<bool, RecordError> {
        if self.left == 0 {
            return match self.r.buf.is_empty() {
                true => Ok(false),
                false => Err(RecordError("trailing bytes")),
            };
        }
        self.left -= 1;
        let r = &mut self.r;
        let flags = r.byte()?;
        if self.first && flags & (SAME_NAME | SAME_TAGS | SAME_FIELD_KEYS) != 0 {
            return Err(RecordError("first metric refers to a previous one"));
        }
        self.first = false;
        if flags & SAME_NAME == 0 {
            self.name = r.str()?;
        }
        self.kind = kind_from((flags >> KIND_SHIFT) & KIND_MASK)?;
        self.time = self.time.wrapping_add(unzigzag(r.varint()?));
        check_tag_flags(flags)?;
        // A tag set is only stepped over here: a reader that finds it by its bytes needs no
        // more ([`MetricsOf::read_tags`] reads it).
        if flags & TAGS_REF != 0 {
            let n = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
            (self.tag_keys, self.tag_bytes) = *self
                .tag_sets
                .get(n)
                .ok_or(RecordError("tag set number out of range"))?;
            self.tag_set = n;
            self.tags_read = false;
        } else if flags & SAME_TAGS == 0 {
            if flags & TAGS_SPLIT != 0 {
                self.tag_keys = match r.tag_keys()? {
                    None => self.keys.ok_or(RecordError("tag keys refer to none"))?,
                    Some(keys) => *self.keys.insert(keys.buf),
                };
                self.tag_bytes = r.prefixed()?.buf;
                // Keeps the two forms apart: only the older one has no keys and some bytes.
                if self.tag_keys.is_empty() && !self.tag_bytes.is_empty() {
                    return Err(RecordError("more tag values than keys"));
                }
            } else {
                let start = r.buf;
                let nt = r.len_prefix(2)?;
                for _ in 0..nt * 2 {
                    let n = r.varint()?;
                    r.take(usize::try_from(n).map_err(|_| RecordError("string too long"))?)?;
                }
                self.tag_keys = &[];
                self.tag_bytes = &start[..start.len() - r.buf.len()];
            }
            self.tag_set = self.tag_sets.len();
            self.tag_sets.push((self.tag_keys, self.tag_bytes));
            self.tags_read = false;
        }
        let nf = r.len_prefix(1)?;
        let same_keys = flags & SAME_FIELD_KEYS != 0;
        if same_keys && self.fields.len() != nf {
            return Err(RecordError("field count differs from the previous metric"));
        }
        if !same_keys {
            self.fields.clear();
        }
        for j in 0..nf {
            let key = if same_keys {
                self.fields[j].0
            } else {
                r.str()?
            };
            let value = r.value()?;
            if same_keys {
                self.fields[j].1 = value;
            } else {
                self.fields.push((key, value));
            }
        }
        Ok(true)
    }

    /// Reads the current metric's tags into `tags` (checking that they are UTF-8).
    pub fn read_tags(&mut self) -> Result<(), RecordError> {
        if !self.tags_read {
            let mut keys = Reader { buf: self.tag_keys };
            let mut values = Reader {
                buf: self.tag_bytes,
            };
            self.tags.clear();
            if keys.buf.is_empty() && !values.buf.is_empty() {
                // An older record's interleaved keys and values.
                for _ in 0..values.varint()? {
                    self.tags.push((values.str()?, values.str()?));
                }
            } else {
                while !values.buf.is_empty() {
                    self.tags.push((keys.str()?, values.str()?));
                }
                if !keys.buf.is_empty() {
                    return Err(RecordError("more tag keys than values"));
                }
            }
            self.tags_read = true;
        }
        Ok(())
    }

    /// The current metric's tag `key` (after [`MetricsOf::read_tags`]).
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        debug_assert!(self.tags_read, "tag() before read_tags()");
        self.tags
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| self.tags[i].1)
    }
}

/// At most one way of giving the tag set.
fn check_tag_flags(flags: u8) -> Result<(), RecordError> {
    match (flags & (SAME_TAGS | TAGS_REF | TAGS_SPLIT)).count_ones() {
        0 | 1 => Ok(()),
        _ => Err(RecordError("tag set given more than one way")),
    }
}

fn kind_code(k: ValueType) -> u8 {
    match k {
        ValueType::Untyped => 0,
        ValueType::Counter => 1,
        ValueType::Gauge => 2,
        ValueType::Histogram => 3,
        ValueType::Summary => 4,
    }
}

fn kind_from(c: u8) -> Result<ValueType, RecordError> {
    Ok(match c {
        0 => ValueType::Untyped,
        1 => ValueType::Counter,
        2 => ValueType::Gauge,
        3 => ValueType::Histogram,
        4 => ValueType::Summary,
        _ => return Err(RecordError("unknown value type")),
    })
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    extend_short(out, s.as_bytes());
}

/// Appends `varint(len << shift) str*`, `len` the bytes of the strings as written.
fn put_strs<'s>(out: &mut Vec<u8>, strs: impl Iterator<Item = &'s Str>, shift: u32) {
    let at = out.len();
    // One byte is kept for the length, the usual case; a longer one is moved in after.
    out.push(0);
    for s in strs {
        put_str(out, s);
    }
    let len = ((out.len() - at - 1) as u64) << shift;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, len);
        out.splice(at..at + 1, prefix);
    }
}

/// `b.is_ascii()`, with two overlapping loads for up to 16 bytes (the standard library goes
/// a byte at a time below 8, and most tag values are that short).
#[inline]
fn is_ascii(b: &[u8]) -> bool {
    let n = b.len();
    match n {
        0 => true,
        1..=3 => (b[0] | b[n / 2] | b[n - 1]) < 0x80,
        4..=7 => {
            let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            (word(0) | word(n - 4)) & 0x8080_8080 == 0
        }
        8..=16 => {
            let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            (word(0) | word(n - 8)) & 0x8080_8080_8080_8080 == 0
        }
        _ => b.is_ascii(),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        let (&b, rest) = self.buf.split_first().ok_or(RecordError("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    /// A reader of the next `n` bytes, which this one steps over.
    fn sub(&mut self, n: u64) -> Result<Reader<'a>, RecordError> {
        let n = usize::try_from(n).map_err(|_| RecordError("truncated"))?;
        Ok(Reader { buf: self.take(n)? })
    }

    /// A reader of the bytes after their length (a varint), which this one steps over.
    fn prefixed(&mut self) -> Result<Reader<'a>, RecordError> {
        let n = self.varint()?;
        self.sub(n)
    }

    /// The head of a tag set written in full: a reader of its keys, or `None` where they
    /// are the last ones written.
    fn tag_keys(&mut self) -> Result<Option<Reader<'a>>, RecordError> {
        match self.varint()? {
            1 => Ok(None),
            head if head & 1 == 0 => self.sub(head >> 1).map(Some),
            _ => Err(RecordError("bad tag keys")),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if n > self.buf.len() {
            return Err(RecordError("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Inlined for its one-byte case, the common one.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, RecordError> {
        match self.buf.first() {
            Some(&b) if b < 0x80 => {
                self.buf = &self.buf[1..];
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(RecordError("varint too long"))
    }

    /// A field's type byte and value. Inlined: returned through memory, the value's odd-sized
    /// copies stalled on store forwarding in the remote-write encoder's loop.
    #[inline(always)]
    fn value(&mut self) -> Result<FieldRef<'a>, RecordError> {
        Ok(match self.byte()? {
            0 => FieldRef::Float(f64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            1 => FieldRef::Int(unzigzag(self.varint()?)),
            2 => FieldRef::UInt(self.varint()?),
            3 => FieldRef::Bool(false),
            4 => FieldRef::Bool(true),
            5 => FieldRef::String(self.str()?),
            _ => return Err(RecordError("unknown field type")),
        })
    }

    /// A count of items that take at least `min_bytes` each: bounded by what is left.
    fn len_prefix(&mut self, min_bytes: usize) -> Result<usize, RecordError> {
        let n = self.varint()?;
        if n > (self.buf.len() / min_bytes) as u64 {
            return Err(RecordError("count larger than the record"));
        }
        Ok(n as usize)
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| RecordError("string too long"))?;
        let bytes = self.take(n)?;
        // Names, keys and values are nearly always ASCII, which is checked a word at a time;
        // `from_utf8` costs several times more on strings this short.
        if is_ascii(bytes) {
            // SAFETY: ASCII is UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| RecordError("invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(metrics: &[Metric]) -> Vec<Metric> {
        let mut buf = Vec::new();
        encode(metrics, &mut buf);
        assert_eq!(count(&buf).unwrap(), metrics.len());
        let mut out = Vec::new();
        decode(&buf, &mut out).unwrap();
        out
    }

    /// Both encodings, decoded.
    fn compressed_round_trip(metrics: &[Metric]) -> Vec<Metric> {
        let mut buf = Vec::new();
        encode_compressed(metrics, &mut buf, &mut Vec::new());
        assert_eq!(count(&buf).unwrap(), metrics.len());
        let mut out = Vec::new();
        decode(&buf, &mut out).unwrap();
        out
    }

    #[test]
    fn similar_metrics_are_compressed() {
        let batch: Vec<Metric> = (0..1000)
            .map(|i| {
                Metric::new("bench", 1_700_000_000_000_000_000 + i * 1_000_000)
                    .with_tag("host", format!("exec-{}", i % 37))
                    .with_tag("job", format!("j{}", i % 11))
                    .with_field("duration_ms", (i % 100) as f64 + 0.25)
                    .with_field("bytes", i * 7)
            })
            .collect();
        let (mut plain, mut packed) = (Vec::new(), Vec::new());
        encode(&batch, &mut plain);
        encode_compressed(&batch, &mut packed, &mut Vec::new());
        assert!(packed.starts_with(&COMPRESSED));
        assert!(
            packed.len() * 2 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(compressed_round_trip(&batch), batch);
        // A small record stays plain.
        let mut small = Vec::new();
        encode_compressed(&batch[..2], &mut small, &mut Vec::new());
        assert!(!small.starts_with(&COMPRESSED));
        // Damage inside the compressed part is an error, never a panic or a wrong batch.
        for i in (COMPRESSED.len()..packed.len()).step_by(7) {
            let mut bad = packed.clone();
            bad[i] ^= 0x55;
            let mut out = Vec::new();
            if decode(&bad, &mut out).is_ok() {
                assert_eq!(out.len(), batch.len());
            }
        }
    }

    #[test]
    fn kept_compression_buffers_carry_nothing_from_a_larger_record() {
        // One thread encodes and decodes a large record, then smaller ones of other metrics:
        // the scratch buffers kept between records hold the larger one's bytes beyond the
        // smaller ones' length, and none of them may leak into a result.
        let batch = |n: i64, name: &str| -> Vec<Metric> {
            (0..n)
                .map(|i| {
                    Metric::new(name, i * 1_000)
                        .with_tag("host", format!("h{}", i % 7))
                        .with_field("v", i as f64 * 0.5)
                })
                .collect()
        };
        for (n, name) in [(5000, "large"), (300, "mid"), (40, "small"), (300, "mid2")] {
            let b = batch(n, name);
            let mut packed = Vec::new();
            encode_compressed(&b, &mut packed, &mut Vec::new());
            assert!(packed.starts_with(&COMPRESSED), "{name}");
            let mut out = Vec::new();
            decode(&packed, &mut out).unwrap();
            assert_eq!(out, b, "{name}");
        }
    }

    #[test]
    fn is_ascii_agrees_with_std_for_every_length_and_position() {
        for n in 0..40 {
            let plain = vec![b'a'; n];
            assert!(is_ascii(&plain), "{n}");
            for at in 0..n {
                let mut b = plain.clone();
                b[at] = 0x80 | (at as u8);
                assert_eq!(is_ascii(&b), b.is_ascii(), "length {n}, high byte at {at}");
            }
        }
    }

    #[test]
    fn shared_names_tags_and_keys_are_written_once() {
        let batch: Vec<Metric> = (0..100)
            .map(|i| {
                Metric::new("http_check", 1_700_000_000_000_000_000 + i)
                    .with_tag("host", "exec-1")
                    .with_tag("scenario", "login")
                    .with_field("status", 200i64)
                    .with_field("duration_ms", i as f64)
            })
            .collect();
        let mut buf = Vec::new();
        encode(&batch, &mut buf);
        // After the first metric: flags, a one-byte time delta, the field count, and the
        // two typed values.
        assert!(buf.len() < 60 + 100 * 16, "{} bytes", buf.len());
        assert_eq!(round_trip(&batch), batch);
    }

    #[test]
    fn corrupt_records_are_errors_and_leave_the_output_alone() {
        let batch = vec![Metric::new("m", 5).with_field("v", 1i64)];
        let mut buf = Vec::new();
        encode(&batch, &mut buf);
        let mut out = vec![Metric::new("kept", 0).with_field("v", 0i64)];
        assert!(decode(&buf[..buf.len() - 1], &mut out).is_err());
        assert_eq!(out.len(), 1);
        let mut extra = buf.clone();
        extra.push(0);
        assert!(decode(&extra, &mut out).is_err());
        // A first metric that says "same name as the previous one".
        assert!(decode(&[1, SAME_NAME], &mut out).is_err());
        // A count of 2^62 metrics in three bytes.
        assert!(
            decode(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f],
                &mut out
            )
            .is_err()
        );
        assert_eq!(out.len(), 1);
    }

    /// Records written before tag keys and values were apart still read, by both readers.
    #[test]
    fn records_with_interleaved_tags_still_read() {
        let mut old = vec![2, 2 << KIND_SHIFT, 1, b'm', 20, 2, 4];
        old.extend(b"host\x01a\x03job\x01j");
        // One field, "v", an int (3).
        old.extend(b"\x01\x01v\x01\x06");
        // The same name, a numbered tag set (0) and the same field key; a float.
        old.extend([
            SAME_NAME | TAGS_REF | SAME_FIELD_KEYS | 2 << KIND_SHIFT,
            10,
            0,
            1,
            0,
        ]);
        old.extend(1.5f64.to_le_bytes());
        let base = Metric::new("m", 10)
            .with_kind(ValueType::Gauge)
            .with_tag("host", "a")
            .with_tag("job", "j");
        let want = [
            base.clone().with_field("v", 3i64),
            Metric {
                time: 15,
                ..base.with_field("v", 1.5)
            },
        ];
        let mut out = Vec::new();
        decode(&old, &mut out).unwrap();
        assert_eq!(out, want);
        assert_eq!(borrowed(&old).unwrap(), want);
    }

    /// Tag sets alternating between two key lists write each list once per change, and
    /// read back with the right keys.
    #[test]
    fn tag_keys_are_left_out_only_when_they_repeat() {
        let batch: Vec<Metric> = (0..12)
            .map(|i| {
                let m = Metric::new("m", i).with_field("v", i);
                match i % 4 {
                    0 | 1 => m.with_tag("host", format!("h{i}")),
                    _ => m.with_tag("zone", format!("z{i}")).with_tag("host", "h"),
                }
            })
            .collect();
        let mut buf = Vec::new();
        encode(&batch, &mut buf);
        assert_eq!(buf.windows(4).filter(|w| w == b"zone").count(), 3);
        assert_eq!(buf.windows(4).filter(|w| w == b"host").count(), 6);
        assert_eq!(round_trip(&batch), batch);
        assert_eq!(borrowed(&buf).unwrap(), batch);
    }

    fn arb_str() -> impl Strategy<Value = Str> {
        prop_oneof![
            Just(Str::from("host")),
            Just(Str::from("a-rather-long-name-that-lives-on-the-heap")),
            "[a-z ,=\"\\\\\n]{0,12}".prop_map(Str::from),
            // Lengths about 128, where a string's length takes a second byte.
            "[a-z]{126,130}".prop_map(Str::from),
            any::<String>().prop_map(Str::from),
        ]
    }

    fn arb_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<f64>().prop_map(FieldValue::Float),
            any::<i64>().prop_map(FieldValue::Int),
            any::<u64>().prop_map(FieldValue::UInt),
            any::<bool>().prop_map(FieldValue::Bool),
            arb_str().prop_map(FieldValue::String),
        ]
    }

    fn arb_metric() -> impl Strategy<Value = Metric> {
        (
            arb_str(),
            proptest::collection::vec((arb_str(), arb_str()), 0..4),
            proptest::collection::vec((arb_str(), arb_value()), 1..4),
            any::<i64>(),
            0u8..5,
        )
            .prop_map(|(name, tags, fields, time, kind)| {
                let mut m = Metric::new(name, time).with_kind(kind_from(kind).unwrap());
                for (k, v) in tags {
                    m.add_tag(k, v);
                }
                for (k, v) in fields {
                    m.add_field(k, v);
                }
                m
            })
    }

    /// Batches where neighbours often share name, tags or keys, and metrics often take the
    /// tag set of an earlier one, to exercise the flags.
    fn arb_batch() -> impl Strategy<Value = Vec<Metric>> {
        let metric = (arb_metric(), 0u8..32, any::<i64>(), any::<usize>());
        proptest::collection::vec(metric, 0..20).prop_map(|v| {
            let mut out: Vec<Metric> = Vec::new();
            for (mut m, share, t, earlier) in v {
                if let Some(p) = out.last() {
                    if share & 1 != 0 {
                        m.name = p.name.clone();
                    }
                    if share & 2 != 0 {
                        m.tags = p.tags.clone();
                    } else if share & 8 != 0 {
                        m.tags = out[earlier % out.len()].tags.clone();
                    } else if share & 16 != 0 {
                        // The keys of an earlier tag set, other values.
                        let keys = out[earlier % out.len()].tags.iter().map(|(k, _)| k);
                        m.tags = keys.map(|k| (k.clone(), format!("{t}").into())).collect();
                    }
                    if share & 4 != 0 {
                        m.fields = p
                            .fields
                            .iter()
                            .map(|(k, _)| (k.clone(), t.into()))
                            .collect();
                    }
                }
                out.push(m);
            }
            out
        })
    }

    /// Float fields compared by bits, so NaN round-trips count as equal.
    fn same(a: &[Metric], b: &[Metric]) -> bool {
        let bits = |m: &Metric| {
            m.fields
                .iter()
                .map(|(k, v)| match v {
                    FieldValue::Float(f) => (k.clone(), FieldValue::UInt(f.to_bits())),
                    other => (k.clone(), other.clone()),
                })
                .collect::<Vec<_>>()
        };
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.name == y.name
                    && x.tags == y.tags
                    && x.time == y.time
                    && x.kind == y.kind
                    && bits(x) == bits(y)
                    && x.fields
                        .iter()
                        .zip(&y.fields)
                        .all(|(p, q)| p.1.type_name() == q.1.type_name())
            })
    }

    /// A batch cycling through its series writes each tag set once, and refers to it by
    /// number after that; both readers see the tags of every metric. (1000 series grow the
    /// encoder's table several times.)
    #[test]
    fn repeated_tag_sets_are_written_once() {
        for (series, len) in [(10usize, 100usize), (1000, 3000)] {
            let batch: Vec<Metric> = (0..len)
                .map(|i| {
                    Metric::new("m", i as i64)
                        .with_tag("host", format!("host-number-{:04}", i % series))
                        .with_tag("z", "zz")
                        .with_field("v", i as f64)
                })
                .collect();
            let mut buf = Vec::new();
            encode(&batch, &mut buf);
            for h in 0..series {
                let value = format!("host-number-{h:04}");
                let times = buf
                    .windows(value.len())
                    .filter(|w| *w == value.as_bytes())
                    .count();
                assert_eq!(times, 1, "{value}");
            }
            // The keys, shared by every tag set, are written once.
            assert_eq!(buf.windows(5).filter(|w| w == b"\x04host").count(), 1);
            // Flags, time, number, field count and a float field: at most 14 bytes a metric;
            // each tag set's values about 21 more.
            assert!(buf.len() < len * 14 + series * 24, "{}", buf.len());
            assert!(same(&round_trip(&batch), &batch));
            assert!(same(&borrowed(&buf).unwrap(), &batch));
            let mut metrics = MetricsOf::new(&buf).unwrap();
            let mut seen: Vec<*const u8> = Vec::new();
            let mut i = 0;
            while metrics.advance().unwrap() {
                let p = metrics.tag_bytes.as_ptr();
                if !seen.contains(&p) {
                    seen.push(p);
                }
                assert_eq!(
                    metrics.tag_set,
                    i % series,
                    "tag sets numbered in order written"
                );
                assert_eq!(seen[metrics.tag_set], p);
                i += 1;
            }
            assert_eq!(seen.len(), series, "one slice per tag set");
        }
    }

    /// A key for a metric's series: its name and tags, each with its length.
    fn series_key(m: &Metric) -> Vec<u8> {
        let mut key = Vec::new();
        for s in std::iter::once(&m.name).chain(m.tags.iter().flat_map(|(k, v)| [k, v])) {
            put_str(&mut key, s);
        }
        key
    }

    /// Writes `m` as a listener does: as its known series if the writer finds it by its
    /// key, else in full, remembered. Whether it was known.
    fn put_series(w: &mut Writer, written: &mut Vec<Metric>, m: Metric) -> bool {
        let key = series_key(&m);
        let known = match w.find_known(&key) {
            Ok(series) => {
                w.push_known(series, &m.fields, m.time, m.kind);
                true
            }
            Err(new) => {
                w.push(&m.name, &m.tags, &m.fields, m.time, m.kind);
                w.remember(&key, new);
                false
            }
        };
        written.push(m);
        known
    }

    #[test]
    fn known_series_are_forgotten_when_full_or_in_another_context() {
        use crate::codec::series_memo::MAX_SERIES;
        let m = |i: usize| {
            Metric::new("m", i as i64)
                .with_tag("i", i.to_string())
                .with_field("v", i as f64)
                .with_kind(ValueType::Counter)
        };
        let (mut w, mut written) = (Writer::default(), Vec::new());
        let mut put = |w: &mut Writer, m| put_series(w, &mut written, m);
        w.known_under(b"a");
        // Each series twice: the table pays for itself.
        for i in 0..MAX_SERIES {
            assert!(!put(&mut w, m(i)));
            assert!(put(&mut w, m(i)), "{i}");
        }
        // Full: the next new series empties it, and is kept.
        assert!(!put(&mut w, m(MAX_SERIES)));
        assert!(!put(&mut w, m(0)));
        assert!(put(&mut w, m(MAX_SERIES)) && put(&mut w, m(0)));
        w.known_under(b"a");
        assert!(put(&mut w, m(0)));
        w.known_under(b"b");
        assert!(!put(&mut w, m(0)));
        let mut out = Vec::new();
        decode(&w.take_record().unwrap().data, &mut out).unwrap();
        assert!(same(&out, &written));
    }

    proptest! {
        #[test]
        fn round_trips(batch in arb_batch()) {
            prop_assert!(same(&round_trip(&batch), &batch));
            prop_assert!(same(&compressed_round_trip(&batch), &batch));
        }

        /// Reusing metrics of earlier batches (other names, tags, fields, kinds) changes
        /// nothing in what is decoded, and a failed decode gives every metric back.
        #[test]
        fn decoding_into_spare_metrics_is_the_same(batch in arb_batch(), old in arb_batch(), cut in any::<usize>()) {
            let mut buf = Vec::new();
            encode(&batch, &mut buf);
            let mut spare = old.clone();
            let mut out = Vec::new();
            decode_reusing(&buf, &mut out, &mut spare).unwrap();
            prop_assert!(same(&out, &batch));
            prop_assert_eq!(spare.len(), old.len().saturating_sub(batch.len()));
            if !buf.is_empty() {
                let total = out.len() + spare.len();
                let before = out.len();
                let _ = decode_reusing(&buf[..cut % buf.len()], &mut out, &mut spare);
                prop_assert_eq!(out.len(), before);
                prop_assert!(out.len() + spare.len() >= total);
            }
        }

        /// The writer's records read back as the metrics given, and are no larger than
        /// `encode`'s (which may write a set again whose equal strings differ in layout).
        #[test]
        fn the_writer_writes_what_encode_does(batch in arb_batch(), split in any::<usize>()) {
            let mut w = Writer::default();
            let mut records = Vec::new();
            let cut = if batch.is_empty() { 0 } else { split % batch.len() };
            for (i, m) in batch.iter().enumerate() {
                if i == cut && i > 0 {
                    records.extend(w.take_record());
                }
                w.push(&m.name, &m.tags, &m.fields, m.time, m.kind);
            }
            prop_assert_eq!(w.len(), batch.len() - cut);
            records.extend(w.take_record());
            prop_assert!(w.is_empty() && w.take_record().is_none());
            let mut out = Vec::new();
            for r in &records {
                prop_assert_eq!(count(&r.data).unwrap(), r.count as usize);
                decode(&r.data, &mut out).unwrap();
            }
            prop_assert!(same(&out, &batch));
            let mut plain = Vec::new();
            encode(&batch, &mut plain);
            let mut w = Writer::default();
            for m in &batch {
                w.push(&m.name, &m.tags, &m.fields, m.time, m.kind);
            }
            let whole = w.take_record().map_or(0, |r| r.data.len());
            prop_assert!(whole <= plain.len(), "{} > {}", whole, plain.len());
        }

        /// Metrics written as series the writer knows (`push_known`, found by a key of the
        /// caller's) read back as the metrics given, in records cut anywhere, however often
        /// a series comes again.
        #[test]
        fn known_series_write_what_push_does(
            batch in arb_batch(),
            cuts in proptest::collection::vec(any::<bool>(), 0..128),
        ) {
            let mut w = Writer::default();
            let (mut records, mut known, mut written) = (Vec::new(), 0, Vec::new());
            let mut cuts = cuts.into_iter();
            // Twice: the second time every series is known.
            for m in batch.iter().chain(&batch) {
                if cuts.next() == Some(true) {
                    records.extend(w.take_record());
                }
                known += put_series(&mut w, &mut written, m.clone()) as usize;
            }
            records.extend(w.take_record());
            // (Keys too long to keep are written as new each time.)
            use crate::codec::series_memo::MAX_KEY;
            let short = batch.iter().filter(|m| series_key(m).len() <= MAX_KEY).count();
            prop_assert!(known >= short);
            let mut out = Vec::new();
            for r in &records {
                prop_assert_eq!(count(&r.data).unwrap(), r.count as usize);
                decode(&r.data, &mut out).unwrap();
            }
            let twice: Vec<Metric> = batch.iter().chain(&batch).cloned().collect();
            prop_assert!(same(&out, &twice));
        }

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut out = Vec::new();
            let _ = count(&bytes);
            if decode(&bytes, &mut out).is_err() {
                prop_assert!(out.is_empty());
            }
        }

        #[test]
        fn never_panics_on_damaged_records(batch in arb_batch(), at in any::<usize>(), byte in any::<u8>(), packed in any::<bool>()) {
            let mut buf = Vec::new();
            if packed {
                encode_compressed(&batch, &mut buf, &mut Vec::new());
            } else {
                encode(&batch, &mut buf);
            }
            if !buf.is_empty() {
                let i = at % buf.len();
                buf[i] = byte;
            }
            let mut out = Vec::new();
            let _ = decode(&buf, &mut out);
            let _ = borrowed(&buf);
        }

        /// The borrowed reader sees exactly what `decode` builds, and fails where it fails.
        #[test]
        fn borrowed_reading_matches_decoding(batch in arb_batch(), packed in any::<bool>(), cut in any::<usize>()) {
            let mut buf = Vec::new();
            if packed {
                encode_compressed(&batch, &mut buf, &mut Vec::new());
            } else {
                encode(&batch, &mut buf);
            }
            let mut decoded = Vec::new();
            decode(&buf, &mut decoded).unwrap();
            prop_assert!(same(&borrowed(&buf).unwrap(), &decoded));
            let cut = &buf[..cut % (buf.len() + 1)];
            let mut out = Vec::new();
            prop_assert_eq!(borrowed(cut).is_ok(), decode(cut, &mut out).is_ok());
        }

        #[test]
        fn borrowed_reading_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = borrowed(&bytes);
        }
    }

    /// A record read with [`MetricsOf`], each metric rebuilt as a `Metric`.
    fn borrowed(record: &[u8]) -> Result<Vec<Metric>, RecordError> {
        let mut scratch = Vec::new();
        let mut metrics = MetricsOf::new(plain(record, &mut scratch)?)?;
        let mut out = Vec::new();
        while metrics.advance()? {
            metrics.read_tags()?;
            // `tag_keys` and `tag_bytes` hold exactly the keys and the values read (unless
            // the record is an older one, which has them together in `tag_bytes`).
            let strs = |buf| {
                let mut r = Reader { buf };
                std::iter::from_fn(move || (!r.buf.is_empty()).then(|| r.str().unwrap()))
            };
            if !metrics.tag_keys.is_empty() || metrics.tag_bytes.is_empty() {
                let keys: Vec<_> = strs(metrics.tag_keys).collect();
                let values: Vec<_> = strs(metrics.tag_bytes).collect();
                assert_eq!(keys, metrics.tags.iter().map(|t| t.0).collect::<Vec<_>>());
                assert_eq!(values, metrics.tags.iter().map(|t| t.1).collect::<Vec<_>>());
            }
            let mut m = Metric::new(metrics.name, metrics.time).with_kind(metrics.kind);
            m.tags = metrics
                .tags
                .iter()
                .map(|&(k, v)| (k.into(), v.into()))
                .collect();
            m.fields = metrics
                .fields
                .iter()
                .map(|&(k, v)| (k.into(), v.into()))
                .collect();
            out.push(m);
        }
        Ok(out)
    }
}
