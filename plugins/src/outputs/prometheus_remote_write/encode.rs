//! The remote-write `WriteRequest` written straight from the metrics into reused buffers: no
//! message structs, no string per label. The bytes are exactly what prost writes for the same
//! request built from `proto` structs (fields in tag order, proto3 defaults left out), so any
//! remote-write receiver decodes them as before.
//!
//! A batch becomes one time series per name + label set, in order of first appearance; each
//! series' samples in time order, one per timestamp (the last written wins); labels sorted by
//! name, the first of two labels whose names sanitize alike kept.

use crate::codec::prometheus_series::{is_label_name, place_into, sanitize_into};
use crate::codec::wire::{copy_short, extend_short, put_varint};
use crate::model::{FieldValue, Metric};

/// Protobuf keys: (field number << 3) | wire type.
const KEY_LEN_1: u8 = 0x0a; // field 1, length-delimited
const KEY_LEN_2: u8 = 0x12; // field 2, length-delimited
const KEY_F64_1: u8 = 0x09; // field 1, 64-bit
const KEY_VARINT_2: u8 = 0x10; // field 2, varint

const NO_SAMPLE: u32 = u32::MAX;

/// Encodes `WriteRequest`s into buffers kept from one batch to the next.
#[derive(Default)]
pub struct Encoder {
    /// The encoded request of the last `encode`.
    raw: Vec<u8>,
    /// Its snappy compression.
    compressed: Vec<u8>,
    snappy: Option<snap::raw::Encoder>,
    /// The encoded labels of every series of the batch, back to back.
    arena: Vec<u8>,
    series: Vec<Series>,
    /// Open addressing: series index + 1, 0 for empty. Length a power of two.
    table: Vec<u32>,
    samples: Vec<Sample>,
    /// The labels of the sample being placed, encoded.
    cur: Vec<u8>,
    /// Its `__name__` value.
    name: Vec<u8>,
    /// Sanitized tag and string-field names of the current metric, back to back.
    names: Vec<u8>,
    /// Samples of one series when they need sorting.
    sort: Vec<(i64, f64)>,
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
    /// First and last sample (a list through `Sample::next`).
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `batch` as one `WriteRequest` (uncompressed protobuf). Empty when no field of
    /// the batch makes a sample (strings only).
    pub fn encode<'a>(&mut self, batch: &'a [Metric], string_as_label: bool) -> &[u8] {
        self.raw.clear();
        self.arena.clear();
        self.series.clear();
        self.samples.clear();
        // At least two slots per metric (a series per metric is common); grown as needed, and
        // not kept far larger than this batch needs (clearing it is part of every batch).
        let want = (batch.len() * 2).next_power_of_two().max(64);
        if self.table.len() < want || self.table.len() > want * 8 {
            self.table = vec![0; want];
        } else {
            self.table.fill(0);
        }

        let mut labels: Vec<Label<'a>> = Vec::with_capacity(16);
        let mut common: Vec<Common<'a>> = Vec::with_capacity(16);
        for m in batch {
            let ms = m.time.div_euclid(1_000_000);
            let mut prepared = false;
            for (key, value) in &m.fields {
                let value = match *value {
                    FieldValue::Float(v) => v,
                    FieldValue::Int(v) => v as f64,
                    FieldValue::UInt(v) => v as f64,
                    FieldValue::Bool(v) => f64::from(u8::from(v)),
                    FieldValue::String(_) => continue,
                };
                self.name.clear();
                let Some(bound) = place_into(m, key, 2, &mut self.name) else {
                    continue;
                };
                if !prepared {
                    prepared = true;
                    self.common_labels(m, string_as_label, &mut common);
                    self.encode_common(&common);
                }
                if bound.is_none() && (!self.common_enc.is_empty() || common.is_empty()) {
                    self.cur.clear();
                    put_label(&mut self.cur, b"__name__", &self.name);
                    self.cur.extend_from_slice(&self.common_enc);
                    self.add_sample(ms, value);
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
                for c in &common {
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
                for l in &labels {
                    let (name, value) = (
                        resolve(l.name, &self.names, &self.name),
                        resolve(l.value, &self.names, &self.name),
                    );
                    put_label(&mut self.cur, name, value);
                }
                self.add_sample(ms, value);
            }
        }
        self.write_request();
        &self.raw
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
    fn common_labels<'a>(&mut self, m: &'a Metric, strings: bool, out: &mut Vec<Common<'a>>) {
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
        for (k, v) in &m.tags {
            if !v.is_empty() {
                out.push(Common {
                    label: Label {
                        name: label_name(&mut self.names, k),
                        value: Text::Borrowed(v.as_bytes()),
                    },
                    tag_key: Some(k.as_str()),
                });
            }
        }
        if strings {
            for (k, v) in &m.fields {
                if let FieldValue::String(s) = v {
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

    /// Adds a sample to the series whose encoded labels are in `cur`.
    fn add_sample(&mut self, ms: i64, value: f64) {
        let hash = hash_bytes(&self.cur);
        let mask = self.table.len() - 1;
        let mut slot = hash as usize & mask;
        let idx = loop {
            match self.table[slot] {
                0 => {
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
                    self.table[slot] = idx as u32 + 1;
                    if self.series.len() * 2 > self.table.len() {
                        self.grow();
                    }
                    break idx;
                }
                i => {
                    let s = &self.series[i as usize - 1];
                    if s.hash == hash
                        && self.arena[s.start as usize..s.end as usize] == self.cur[..]
                    {
                        break i as usize - 1;
                    }
                    slot = (slot + 1) & mask;
                }
            }
        };
        let at = self.samples.len() as u32;
        self.samples.push(Sample {
            ms,
            value,
            next: NO_SAMPLE,
        });
        let s = &mut self.series[idx];
        if s.tail == NO_SAMPLE {
            s.head = at;
        } else {
            let last = &mut self.samples[s.tail as usize];
            if last.ms >= ms {
                s.ordered = false;
            }
            last.next = at;
        }
        s.tail = at;
    }

    fn grow(&mut self) {
        let len = self.table.len() * 2;
        self.table = vec![0; len];
        let mask = len - 1;
        for (i, s) in self.series.iter().enumerate() {
            let mut slot = s.hash as usize & mask;
            while self.table[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.table[slot] = i as u32 + 1;
        }
    }

    /// Writes every series (labels, then samples) to `raw`.
    fn write_request(&mut self) {
        let Encoder {
            raw,
            arena,
            series,
            samples,
            sort,
            ..
        } = self;
        for s in series.iter() {
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

/// A fast hash of the encoded labels (FxHash-style, 8 bytes at a time).
#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = b.len() as u64;
    let (chunks, rest) = b.as_chunks::<8>();
    for c in chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(*c)).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // The table uses the low bits: fold the well-mixed high bits down.
    h ^ (h >> 29)
}
