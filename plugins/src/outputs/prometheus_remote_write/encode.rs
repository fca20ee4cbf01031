//! The remote-write `WriteRequest` written straight from the buffer's records (names, tags and
//! values borrowed from their bytes) into reused buffers: no `Metric`s, no message structs, no
//! string per label. The bytes are exactly what prost writes for the same
//! request built from `proto` structs (fields in tag order, proto3 defaults left out), so any
//! remote-write receiver decodes them as before.
//!
//! A batch becomes one time series per name + label set, in order of first appearance; each
//! series' samples in time order, one per timestamp (the last written wins); labels sorted by
//! name, the first of two labels whose names sanitize alike kept.
//!
//! Most samples of a batch belong to a series seen before: a sample finds its series by the
//! pair (its series name's entry in a name cache, its tag set's entry found by the
//! record's bytes of it), so labels are sanitized, sorted and encoded once per tag set and
//! compared once per series, not once per sample. A tag set's entry keeps the series of its
//! first few pairs itself: most samples find their series there.
//!
//! Those tables outlive the batch: the next request of an agent repeats most of the series of
//! the last one, which then cost a lookup instead of being read, sanitized, encoded and
//! hashed again. They are all forgotten after a damaged record, and when they hold more
//! series or tag sets than twice the larger of `KEEP_SERIES` (1,024) and the last batch's
//! series (series that come and go); the names and pairs alone when the name cache is full.

use crate::codec::prometheus_series::{is_label_name, place_into, sanitize_into};
use crate::codec::record::{self, FieldRef, MetricsOf, RecordError};
use crate::codec::slots::Slots;
use crate::codec::wire::{copy_short, extend_short, hash_bytes, put_varint};
use crate::model::{Metric, ValueType};

/// Protobuf keys: (field number << 3) | wire type.
const KEY_LEN_1: u8 = 0x0a; // field 1, length-delimited
const KEY_LEN_2: u8 = 0x12; // field 2, length-delimited
const KEY_F64_1: u8 = 0x09; // field 1, 64-bit
const KEY_VARINT_2: u8 = 0x10; // field 2, varint

const NO_SAMPLE: u32 = u32::MAX;

/// An empty list of another type, in the same allocation when the two have one layout (the
/// standard library collects in place then; otherwise it allocates): label lists borrow the
/// record being read, and are kept from one record to the next under another lifetime.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}

/// Encodes `WriteRequest`s into buffers kept from one batch to the next.
#[derive(Default)]
pub struct Encoder {
    /// The encoded request of the last `encode`.
    raw: Vec<u8>,
    /// Its snappy compression.
    compressed: Vec<u8>,
    snappy: Option<snap::raw::Encoder>,
    /// The encoded labels of every series known, back to back.
    arena: Vec<u8>,
    series: Vec<Series>,
    /// The series that have samples in this batch, in order of their first.
    used: Vec<u32>,
    /// Finds a series by the hash of its labels.
    series_slots: Slots,
    samples: Vec<Sample>,
    /// The labels of the sample being placed, encoded.
    cur: Vec<u8>,
    /// Its `__name__` value.
    name: Vec<u8>,
    /// Sanitized tag and string-field names of the current metric, back to back.
    names: Vec<u8>,
    /// Samples of one series when they need sorting.
    sort: Vec<(i64, f64)>,
    /// Series names of the (measurement, field key) pairs seen.
    names_of: NameCache,
    tag_sets: TagSets,
    /// The series of (series name, tag set) pairs seen beyond the first `TagSet::PAIRS` of a
    /// tag set (which it keeps itself), keyed `name entry << 32 | tag set entry`: a sample of a
    /// known pair finds its series without its labels being built, hashed and compared.
    pairs: Vec<(u64, u32)>,
    pair_slots: Slots,
    /// Scratch for `encode`'s record and for decompressing records.
    record: Vec<u8>,
    plain: Vec<u8>,
    /// The allocations of `add_record`'s label lists, kept between records.
    labels: Vec<Label<'static>>,
    common: Vec<Common<'static>>,
    /// The encoded common labels of the current metric, when they all sort after
    /// `__name__` in the order given (the usual case): each of its samples then takes them
    /// as they are.
    common_enc: Vec<u8>,
}

struct Series {
    /// Its labels in `arena`.
    start: u32,
    end: u32,
    hash: u64,
    /// First and last sample of this batch (a list through `Sample::next`), or `NO_SAMPLE`.
    head: u32,
    tail: u32,
    /// Timestamps strictly increasing in list order: no sorting or merging needed.
    ordered: bool,
}

#[derive(Clone, Copy)]
struct Sample {
    ms: i64,
    value: f64,
    next: u32,
}

/// The series names of (measurement, field key) pairs seen, for metrics that are
/// neither histograms nor summaries (whose names depend on nothing else): most metrics of a
/// batch repeat a few pairs, and finding a name costs less than sanitizing it again.
#[derive(Default)]
struct NameCache {
    /// Measurement, key and name of each entry, back to back.
    text: Vec<u8>,
    /// Each entry's lengths of measurement, key and name, and where it starts in `text`.
    entries: Vec<(u32, u32, u32, u32)>,
}

impl NameCache {
    /// Entries kept: past them, names are made as without a cache (until the encoder forgets
    /// them all, at the next batch).
    const MAX: usize = 64;

    fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
    }

    /// The entry of `measurement`'s field `key`, added if new; `None` once the cache is full.
    fn find_or_add(&mut self, measurement: &str, key: &str) -> Option<u32> {
        let (m, k) = (measurement.as_bytes(), key.as_bytes());
        for (i, &(ml, kl, _, at)) in self.entries.iter().enumerate() {
            if ml as usize != m.len() || kl as usize != k.len() {
                continue;
            }
            let (em, rest) = self.text[at as usize..].split_at(m.len());
            if em == m && &rest[..k.len()] == k {
                return Some(i as u32);
            }
        }
        if self.entries.len() >= Self::MAX {
            return None;
        }
        let at = self.text.len();
        self.text.extend_from_slice(m);
        self.text.extend_from_slice(k);
        series_name_into(measurement, key, &mut self.text);
        let nl = self.text.len() - at - m.len() - k.len();
        self.entries
            .push((m.len() as u32, k.len() as u32, nl as u32, at as u32));
        Some(self.entries.len() as u32 - 1)
    }

    /// The series name of entry `i`.
    fn name(&self, i: u32) -> &[u8] {
        let (ml, kl, nl, at) = self.entries[i as usize];
        let at = (at + ml + kl) as usize;
        &self.text[at..at + nl as usize]
    }
}

/// The tag sets seen, by their bytes in the records, with what the labels of a metric
/// with that tag set (and no string field made a label) encode to: most metrics repeat a tag
/// set seen before, and finding it costs less than sanitizing, ordering and encoding again.
#[derive(Default)]
struct TagSets {
    /// Each entry's record bytes, then its encoded labels.
    text: Vec<u8>,
    entries: Vec<TagSet>,
    slots: Slots,
}

struct TagSet {
    at: u32,
    /// Its record bytes: keys (`keys_len` of them), then values (see `MetricsOf::tag_keys`).
    keys_len: u32,
    raw_len: u32,
    /// Its encoded labels, or `None` when they need the general path (names out of order,
    /// or one sorting before `__name__`).
    enc_len: Option<u32>,
    hash: u64,
    /// The series of its first pairs with a series name: (name entry, series), `NO_PAIR`
    /// where unused. A sample finds its series here with no lookup in `Encoder::pairs`:
    /// those lookups, two tables apart in memory, were the encoder's costliest loads.
    pairs: [(u32, u32); TagSet::PAIRS],
}

const NO_PAIR: (u32, u32) = (u32::MAX, u32::MAX);

impl TagSet {
    const PAIRS: usize = 4;
}

impl TagSets {
    fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
        self.slots.reset();
    }

    fn raw(&self, e: &TagSet) -> &[u8] {
        &self.text[e.at as usize..(e.at + e.raw_len) as usize]
    }

    /// The encoded labels of entry `i`.
    fn encoded(&self, i: u32) -> &[u8] {
        let e = &self.entries[i as usize];
        let at = (e.at + e.raw_len) as usize;
        &self.text[at..at + e.enc_len.unwrap_or(0) as usize]
    }
}

/// What the previous metrics of a record found: tag sets by their number in the record,
/// series names by where their bytes are (within one record the same place is the same
/// bytes, and a metric that repeats the name or field keys of the one before it, as records
/// store them, points to the same place).
#[derive(Default)]
struct Last<'a> {
    /// The tag set entry of each tag set of the record looked up, by its number there.
    tag_sets: Vec<Option<Option<u32>>>,
    /// The series name entry of the last field looked up at each position.
    names: Vec<Option<(&'a str, &'a str, Option<u32>)>>,
}

/// Where a label's name or value lives while a sample's labels are sorted.
#[derive(Clone, Copy)]
enum Text<'a> {
    Borrowed(&'a [u8]),
    /// A range of `Encoder::names`.
    Names(u32, u32),
    /// `Encoder::name`.
    SeriesName,
}

#[derive(Clone, Copy)]
struct Label<'a> {
    name: Text<'a>,
    value: Text<'a>,
}

/// A label of the current metric that every sample of it gets (tags, string fields).
#[derive(Clone, Copy)]
struct Common<'a> {
    label: Label<'a>,
    /// The tag's key as written, for leaving out the tag a bound label replaces.
    tag_key: Option<&'a str>,
}

impl Encoder {
    /// Series kept from one batch to the next: up to twice this, or twice the number the last
    /// batch used if more (which bounds what series that come and go leave behind).
    const KEEP_SERIES: usize = 1024;

    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `batch` as one `WriteRequest` (uncompressed protobuf). Empty when no field of
    /// the batch makes a sample (strings only).
    pub fn encode(&mut self, batch: &[Metric], string_as_label: bool) -> &[u8] {
        let mut rec = std::mem::take(&mut self.record);
        rec.clear();
        record::encode(batch, &mut rec);
        let skipped = self.encode_records(&[&rec], string_as_label);
        debug_assert!(skipped.is_none(), "a record just written reads back");
        self.record = rec;
        &self.raw
    }

    /// Encodes the metrics of buffer records ([`record`]) as one `WriteRequest`, read
    /// straight from their bytes, into [`Encoder::request`]. A record that cannot be read is
    /// left out whole: returns how many metrics such records held, and the first error.
    pub fn encode_records(
        &mut self,
        records: &[&[u8]],
        string_as_label: bool,
    ) -> Option<(usize, RecordError)> {
        let mut bad: Vec<usize> = Vec::new();
        let mut first_error = None;
        // A damaged record (a bug, or a disk fault past its checksum) is found while its
        // samples are being added: start over without it, so none of it is sent.
        self.start_batch(false);
        'again: loop {
            let mut scratch = std::mem::take(&mut self.plain);
            for (i, rec) in records.iter().enumerate() {
                if bad.contains(&i) {
                    continue;
                }
                if let Err(e) = self.add_record(rec, &mut scratch, string_as_label) {
                    bad.push(i);
                    first_error.get_or_insert(e);
                    self.plain = scratch;
                    self.start_batch(true);
                    continue 'again;
                }
            }
            self.plain = scratch;
            break;
        }
        self.write_request();
        let lost = metric_count(bad.iter().map(|&i| &records[i]));
        first_error.map(|e| (lost, e))
    }

    /// The request of the last `encode` or `encode_records`; empty when no field made a
    /// sample (strings only).
    pub fn request(&self) -> &[u8] {
        &self.raw
    }

    /// Empties the request and the samples; forgets the series, names and tag sets known
    /// when told to, or when keeping them no longer pays (see the module's doc).
    fn start_batch(&mut self, forget: bool) {
        self.raw.clear();
        self.samples.clear();
        for &i in &self.used {
            let s = &mut self.series[i as usize];
            (s.head, s.tail, s.ordered) = (NO_SAMPLE, NO_SAMPLE, true);
        }
        let keep = self.used.len().max(Self::KEEP_SERIES) * 2;
        self.used.clear();
        // Nothing known (a new encoder): the tables are sized here. Offsets into the arena
        // and the tag sets' text are u32.
        if forget
            || self.series.is_empty()
            || self.series.len() > keep
            || self.tag_sets.entries.len() > keep
            || self.arena.len() > u32::MAX as usize / 2
            || self.tag_sets.text.len() > u32::MAX as usize / 2
        {
            self.arena.clear();
            self.series.clear();
            self.series_slots.reset();
            self.tag_sets.clear();
            self.forget_names();
        } else if self.names_of.entries.len() >= NameCache::MAX {
            // Pairs are keyed by name entry: they go with the names; series and tag sets stay.
            self.forget_names();
        }
    }

    fn forget_names(&mut self) {
        self.names_of.clear();
        for e in &mut self.tag_sets.entries {
            e.pairs = [NO_PAIR; TagSet::PAIRS];
        }
        self.pairs.clear();
        self.pair_slots.reset();
    }

    fn add_record(
        &mut self,
        rec: &[u8],
        scratch: &mut Vec<u8>,
        string_as_label: bool,
    ) -> Result<(), RecordError> {
        let mut metrics = MetricsOf::new(record::plain(rec, scratch)?)?;
        let mut labels = recycle(std::mem::take(&mut self.labels));
        let mut common = recycle(std::mem::take(&mut self.common));
        let mut last = Last::default();
        let result = loop {
            let added = match metrics.advance() {
                Ok(true) => self.add_metric(
                    &mut metrics,
                    string_as_label,
                    &mut labels,
                    &mut common,
                    &mut last,
                ),
                Ok(false) => break Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = added {
                break Err(e);
            }
        };
        self.labels = recycle(labels);
        self.common = recycle(common);
        result
    }

    fn add_metric<'a>(
        &mut self,
        m: &mut MetricsOf<'a>,
        string_as_label: bool,
        labels: &mut Vec<Label<'a>>,
        common: &mut Vec<Common<'a>>,
        last: &mut Last<'a>,
    ) -> Result<(), RecordError> {
        let ms = m.time.div_euclid(1_000_000);
        let histogram = matches!(m.kind, ValueType::Histogram | ValueType::Summary);
        // The usual series (no bound label, no string field made a label) are found by
        // their (series name, tag set) pair.
        let strings_as_labels =
            string_as_label && m.fields.iter().any(|f| matches!(f.1, FieldRef::String(_)));
        let by_pair = !histogram && !strings_as_labels;
        let tag_set = match last.tag_sets.get(m.tag_set) {
            _ if !by_pair => None,
            Some(&Some(t)) => t,
            _ => {
                let t = self.tag_set(m, common)?;
                if last.tag_sets.len() <= m.tag_set {
                    last.tag_sets.resize(m.tag_set + 1, None);
                }
                last.tag_sets[m.tag_set] = Some(t);
                t
            }
        };
        // The general path reads the tags themselves.
        if tag_set.is_none() {
            m.read_tags()?;
        }
        let m = &*m;
        let mut prepared = false;
        for (j, &(key, value)) in m.fields.iter().enumerate() {
            let value = match value {
                FieldRef::Float(v) => v,
                FieldRef::Int(v) => v as f64,
                FieldRef::UInt(v) => v as f64,
                FieldRef::Bool(v) => f64::from(u8::from(v)),
                FieldRef::String(_) => continue,
            };
            if let Some(tag_set) = tag_set {
                let series = match self.name_entry(m.name, key, j, last) {
                    Some(name) => self.series_of_pair(name, tag_set),
                    // The name cache is full: the labels are the name's and the tag set's.
                    None => {
                        self.name.clear();
                        series_name_into(m.name, key, &mut self.name);
                        name_then(&mut self.cur, &self.name, self.tag_sets.encoded(tag_set));
                        self.series_of_cur()
                    }
                };
                self.push_sample(series, ms, value);
                continue;
            }
            self.name.clear();
            let bound = if histogram {
                match place_into(m.name, m.kind, |l| m.tag(l), key, 2, &mut self.name) {
                    Some(bound) => bound,
                    None => continue,
                }
            } else {
                // The name depends on the measurement and the key only.
                match self.names_of.find_or_add(m.name, key) {
                    Some(i) => self.name.extend_from_slice(self.names_of.name(i)),
                    None => series_name_into(m.name, key, &mut self.name),
                }
                None
            };
            if !prepared {
                prepared = true;
                self.common_labels(m, string_as_label, common);
                self.encode_common(common);
            }
            if bound.is_none() && (!self.common_enc.is_empty() || common.is_empty()) {
                name_then(&mut self.cur, &self.name, &self.common_enc);
                let series = self.series_of_cur();
                self.push_sample(series, ms, value);
                continue;
            }
            // The labels in the order they are given precedence: `__name__`, the tags
            // (but the one a bound label replaces), string fields, the bound label.
            let skip_tag = bound.map(|b| b.0).filter(|l| m.tag(l).is_some());
            labels.clear();
            labels.push(Label {
                name: Text::Borrowed(b"__name__"),
                value: Text::SeriesName,
            });
            for c in common.iter() {
                if skip_tag.is_none() || c.tag_key != skip_tag {
                    labels.push(c.label);
                }
            }
            if let Some((l, text)) = bound {
                labels.push(Label {
                    name: Text::Borrowed(l.as_bytes()),
                    value: Text::Borrowed(text.as_bytes()),
                });
            }
            // Stable: of two labels with one name, the first given comes first and is
            // the one kept.
            let (names, series_name) = (&self.names[..], &self.name[..]);
            let text = |t: Text<'a>| resolve(t, names, series_name);
            if !labels.windows(2).all(|w| text(w[0].name) < text(w[1].name)) {
                labels.sort_by(|a, b| text(a.name).cmp(text(b.name)));
                labels.dedup_by(|b, a| text(a.name) == text(b.name));
            }
            self.cur.clear();
            for l in labels.iter() {
                let (name, value) = (
                    resolve(l.name, &self.names, &self.name),
                    resolve(l.value, &self.names, &self.name),
                );
                put_label(&mut self.cur, name, value);
            }
            let series = self.series_of_cur();
            self.push_sample(series, ms, value);
        }
        Ok(())
    }

    /// The snappy compression of the last encoded request.
    pub fn compress(&mut self) -> Result<&[u8], snap::Error> {
        let max = snap::raw::max_compress_len(self.raw.len());
        if self.compressed.len() < max {
            self.compressed.resize(max, 0);
        }
        let enc = self.snappy.get_or_insert_with(snap::raw::Encoder::new);
        let n = enc.compress(&self.raw, &mut self.compressed)?;
        Ok(&self.compressed[..n])
    }

    /// The tag labels (and with `string_as_label` the string-field labels) of `m`, names
    /// sanitized: borrowed when already valid, else written to `names`.
    fn common_labels<'a>(&mut self, m: &MetricsOf<'a>, strings: bool, out: &mut Vec<Common<'a>>) {
        out.clear();
        self.names.clear();
        let label_name = |names: &mut Vec<u8>, k: &'a str| {
            if is_label_name(k) {
                Text::Borrowed(k.as_bytes())
            } else {
                let s = names.len() as u32;
                sanitize_into(names, &[k], false);
                Text::Names(s, names.len() as u32)
            }
        };
        for &(k, v) in &m.tags {
            if !v.is_empty() {
                out.push(Common {
                    label: Label {
                        name: label_name(&mut self.names, k),
                        value: Text::Borrowed(v.as_bytes()),
                    },
                    tag_key: Some(k),
                });
            }
        }
        if strings {
            for &(k, v) in &m.fields {
                if let FieldRef::String(s) = v {
                    out.push(Common {
                        label: Label {
                            name: label_name(&mut self.names, k),
                            value: Text::Borrowed(s.as_bytes()),
                        },
                        tag_key: None,
                    });
                }
            }
        }
    }

    /// Encodes `common` into `common_enc` when its names are strictly increasing and all after
    /// `__name__`; leaves `common_enc` empty otherwise (the general path sorts per sample).
    fn encode_common(&mut self, common: &[Common<'_>]) {
        self.common_enc.clear();
        let names = &self.names[..];
        let in_order = common
            .first()
            .is_some_and(|c| resolve(c.label.name, names, &[]) > b"__name__".as_slice())
            && common.windows(2).all(|w| {
                resolve(w[0].label.name, names, &[]) < resolve(w[1].label.name, names, &[])
            });
        if in_order {
            for c in common {
                let (name, value) = (
                    resolve(c.label.name, names, &[]),
                    resolve(c.label.value, names, &[]),
                );
                put_label(&mut self.common_enc, name, value);
            }
        }
    }

    /// The series name entry of `measurement`'s field `key`, the `j`th of its metric: the
    /// previous metric's at that position when it had the same name and key, else looked up
    /// (added if new); `None` once the cache is full.
    fn name_entry<'a>(
        &mut self,
        measurement: &'a str,
        key: &'a str,
        j: usize,
        last: &mut Last<'a>,
    ) -> Option<u32> {
        if let Some(Some((n, k, id))) = last.names.get(j)
            && std::ptr::eq(*n, measurement)
            && std::ptr::eq(*k, key)
        {
            return *id;
        }
        let id = self.names_of.find_or_add(measurement, key);
        if last.names.len() <= j {
            last.names.resize(j + 1, None);
        }
        last.names[j] = Some((measurement, key, id));
        id
    }

    /// The tag set entry of `m`'s tags, added if new; `None` when its labels need the general
    /// path.
    fn tag_set<'a>(
        &mut self,
        m: &mut MetricsOf<'a>,
        common: &mut Vec<Common<'a>>,
    ) -> Result<Option<u32>, RecordError> {
        let (keys, values) = (m.tag_keys, m.tag_bytes);
        let hash = hash_bytes(values) ^ hash_bytes(keys).rotate_left(32);
        let sets = &self.tag_sets;
        let slot = match sets.slots.find(hash, |i| {
            let e = &sets.entries[i];
            let raw = sets.raw(e);
            e.hash == hash
                && e.keys_len as usize == keys.len()
                && raw[..keys.len()] == *keys
                && raw[keys.len()..] == *values
        }) {
            Ok(i) => return Ok(sets.entries[i].enc_len.map(|_| i as u32)),
            Err(slot) => slot,
        };
        m.read_tags()?;
        self.common_labels(m, false, common);
        self.encode_common(common);
        let ordered = !self.common_enc.is_empty() || common.is_empty();
        let sets = &mut self.tag_sets;
        let at = sets.text.len() as u32;
        sets.text.extend_from_slice(keys);
        sets.text.extend_from_slice(values);
        sets.text.extend_from_slice(&self.common_enc);
        let i = sets.entries.len();
        sets.entries.push(TagSet {
            at,
            keys_len: keys.len() as u32,
            raw_len: (keys.len() + values.len()) as u32,
            enc_len: ordered.then_some(self.common_enc.len() as u32),
            hash,
            pairs: [NO_PAIR; TagSet::PAIRS],
        });
        let entries = &sets.entries;
        sets.slots.insert(slot, i, |j| entries[j].hash);
        Ok(ordered.then_some(i as u32))
    }

    /// The series of series name entry `name` with the labels of tag set entry `tag_set`.
    fn series_of_pair(&mut self, name: u32, tag_set: u32) -> u32 {
        let kept = &self.tag_sets.entries[tag_set as usize].pairs;
        match kept.iter().position(|&(n, _)| n == name || n == NO_PAIR.0) {
            Some(i) if kept[i].0 == name => kept[i].1,
            Some(free) => {
                let series = self.series_of_name_then(name, tag_set);
                self.tag_sets.entries[tag_set as usize].pairs[free] = (name, series);
                series
            }
            None => {
                let key = (u64::from(name) << 32) | u64::from(tag_set);
                let hash = hash_u64(key);
                let pairs = &self.pairs;
                let slot = match self.pair_slots.find(hash, |i| pairs[i].0 == key) {
                    Ok(i) => return pairs[i].1,
                    Err(slot) => slot,
                };
                let series = self.series_of_name_then(name, tag_set);
                let i = self.pairs.len();
                self.pairs.push((key, series));
                let pairs = &self.pairs;
                self.pair_slots.insert(slot, i, |j| hash_u64(pairs[j].0));
                series
            }
        }
    }

    /// The series of series name entry `name` with the labels of tag set entry `tag_set`,
    /// found by its labels (added if new).
    fn series_of_name_then(&mut self, name: u32, tag_set: u32) -> u32 {
        name_then(
            &mut self.cur,
            self.names_of.name(name),
            self.tag_sets.encoded(tag_set),
        );
        self.series_of_cur()
    }

    /// The series whose encoded labels are in `cur`, added if new.
    fn series_of_cur(&mut self) -> u32 {
        let hash = hash_bytes(&self.cur);
        let (series, arena, cur) = (&self.series, &self.arena, &self.cur);
        let slot = match self.series_slots.find(hash, |i| {
            let s = &series[i];
            s.hash == hash && arena[s.start as usize..s.end as usize] == cur[..]
        }) {
            Ok(i) => return i as u32,
            Err(slot) => slot,
        };
        let idx = self.series.len();
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(&self.cur);
        self.series.push(Series {
            start,
            end: self.arena.len() as u32,
            hash,
            head: NO_SAMPLE,
            tail: NO_SAMPLE,
            ordered: true,
        });
        let series = &self.series;
        self.series_slots.insert(slot, idx, |j| series[j].hash);
        idx as u32
    }

    /// Appends a sample to `series`.
    fn push_sample(&mut self, series: u32, ms: i64, value: f64) {
        let at = self.samples.len() as u32;
        self.samples.push(Sample {
            ms,
            value,
            next: NO_SAMPLE,
        });
        let s = &mut self.series[series as usize];
        if s.tail == NO_SAMPLE {
            s.head = at;
            self.used.push(series);
        } else {
            let last = &mut self.samples[s.tail as usize];
            if last.ms >= ms {
                s.ordered = false;
            }
            last.next = at;
        }
        s.tail = at;
    }

    /// Writes every series (labels, then samples) to `raw`.
    fn write_request(&mut self) {
        let Encoder {
            raw,
            arena,
            series,
            used,
            samples,
            sort,
            ..
        } = self;
        for s in used.iter().map(|&i| &series[i as usize]) {
            sort.clear();
            let mut i = s.head;
            while i != NO_SAMPLE {
                let x = samples[i as usize];
                sort.push((x.ms, x.value));
                i = x.next;
            }
            if !s.ordered {
                // Stable: of equal timestamps the later write comes last and is kept.
                sort.sort_by_key(|x| x.0);
                let mut kept = 0;
                for j in 0..sort.len() {
                    if kept > 0 && sort[kept - 1].0 == sort[j].0 {
                        sort[kept - 1] = sort[j];
                    } else {
                        sort[kept] = sort[j];
                        kept += 1;
                    }
                }
                sort.truncate(kept);
            }
            let labels = &arena[s.start as usize..s.end as usize];
            let mut len = labels.len();
            for &(ms, value) in sort.iter() {
                len += field_len(sample_len(ms, value));
            }
            raw.push(KEY_LEN_1);
            put_varint(raw, len as u64);
            raw.extend_from_slice(labels);
            for &(ms, value) in sort.iter() {
                raw.push(KEY_LEN_2);
                put_varint(raw, sample_len(ms, value) as u64);
                // proto3: zero values are not written (prost compares with `!= 0.0`, so -0.0
                // is left out too).
                if value != 0.0 {
                    raw.push(KEY_F64_1);
                    raw.extend_from_slice(&value.to_le_bytes());
                }
                if ms != 0 {
                    raw.push(KEY_VARINT_2);
                    put_varint(raw, ms as u64);
                }
            }
        }
    }
}

/// How many metrics records say they hold (a damaged one may say anything).
fn metric_count<'r>(records: impl Iterator<Item = &'r &'r [u8]>) -> usize {
    records
        .map(|r| record::count(r).unwrap_or(0))
        .fold(0, usize::saturating_add)
}

/// The bytes of a label's name or value.
#[inline]
fn resolve<'x>(t: Text<'x>, names: &'x [u8], series_name: &'x [u8]) -> &'x [u8] {
    match t {
        Text::Borrowed(b) => b,
        Text::Names(s, e) => &names[s as usize..e as usize],
        Text::SeriesName => series_name,
    }
}

/// Length of an encoded `Sample`.
#[inline]
fn sample_len(ms: i64, value: f64) -> usize {
    let v = if value != 0.0 { 9 } else { 0 };
    let t = if ms != 0 {
        1 + varint_len(ms as u64)
    } else {
        0
    };
    v + t
}

/// Bytes a length-delimited field of `len` bytes takes, key and length included.
#[inline]
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Bytes a string field of `len` bytes takes; proto3 leaves empty strings out.
#[inline]
fn string_len(len: usize) -> usize {
    if len == 0 { 0 } else { field_len(len) }
}

/// One `Label` message (field 1 of a `TimeSeries`).
#[inline]
fn put_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let (n, v) = (name.len(), value.len());
    // The usual label: name and value non-empty and short, so every length is one byte.
    if (1..=32).contains(&n) && (1..=32).contains(&v) {
        const MAX: usize = 6 + 32 + 32;
        let at = out.len();
        out.extend_from_slice(&[0u8; MAX]);
        let dst = &mut out[at..at + MAX];
        dst[..4].copy_from_slice(&[KEY_LEN_1, (4 + n + v) as u8, KEY_LEN_1, n as u8]);
        copy_short(&mut dst[4..], name);
        dst[4 + n..6 + n].copy_from_slice(&[KEY_LEN_2, v as u8]);
        copy_short(&mut dst[6 + n..], value);
        out.truncate(at + 6 + n + v);
        return;
    }
    let len = string_len(name.len()) + string_len(value.len());
    out.push(KEY_LEN_1);
    put_varint(out, len as u64);
    put_string(out, KEY_LEN_1, name);
    put_string(out, KEY_LEN_2, value);
}

/// A string field; proto3 leaves empty strings out.
#[inline]
fn put_string(out: &mut Vec<u8>, key: u8, s: &[u8]) {
    if !s.is_empty() {
        out.push(key);
        put_varint(out, s.len() as u64);
        extend_short(out, s);
    }
}

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the series name of `measurement`'s field `key` (no value type, no bound label).
fn series_name_into(measurement: &str, key: &str, out: &mut Vec<u8>) {
    _ = place_into(measurement, ValueType::Untyped, |_| None, key, 2, out);
}

/// Sets `cur` to a series' labels: `__name__` = `name`, then `rest`, labels already encoded
/// in order (all sorting after `__name__`).
fn name_then(cur: &mut Vec<u8>, name: &[u8], rest: &[u8]) {
    cur.clear();
    put_label(cur, b"__name__", name);
    cur.extend_from_slice(rest);
}

/// A hash of a (name, tag set) pair key whose low bits depend on both halves.
#[inline]
fn hash_u64(k: u64) -> u64 {
    let h = (k ^ (k >> 29)).wrapping_mul(0x517c_c1b7_2722_0a95);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Series that come and go do not pile up: what the encoder keeps before a batch stays
    /// within twice the larger of `KEEP_SERIES` and the last batch's series (so after one,
    /// three batches' worth here), while the series of the batch before are found again
    /// rather than made anew.
    #[test]
    fn known_series_are_kept_within_bounds() {
        let mut enc = Encoder::new();
        let batch = |from: usize| -> Vec<Metric> {
            (from..from + 1500)
                .map(|i| {
                    Metric::new("m", 1_000_000)
                        .with_tag("id", i.to_string())
                        .with_field("v", 1.0)
                })
                .collect()
        };
        enc.encode(&batch(0), false);
        let arena = enc.arena.len();
        enc.encode(&batch(0), false);
        assert_eq!(enc.arena.len(), arena, "the same series were made again");
        for round in 1..20 {
            enc.encode(&batch(round * 1500), false);
            assert!(
                enc.series.len() <= 3 * 1500,
                "{} series kept",
                enc.series.len()
            );
            assert!(enc.tag_sets.entries.len() <= 3 * 1500);
            assert_eq!(enc.used.len(), 1500);
        }
    }

    /// A full name cache is emptied with the pairs keyed by its entries; the series and tag
    /// sets stay, and requests are what a new encoder writes.
    #[test]
    fn a_full_name_cache_forgets_names_but_keeps_series() {
        let batch = |from: usize| -> Vec<Metric> {
            (from..from + 70)
                .map(|i| Metric::new(format!("m{i}"), 1_000_000).with_field("v", 1.0))
                .collect()
        };
        let mut enc = Encoder::new();
        for (n, from) in [0, 70, 0].into_iter().enumerate() {
            let want = Encoder::new().encode(&batch(from), false).to_vec();
            assert_eq!(enc.encode(&batch(from), false), &want[..]);
            assert_eq!(enc.names_of.entries.len(), NameCache::MAX);
            assert_eq!(enc.series.len(), 70 * (n + 1).min(2), "batch {n}");
        }
    }
}
