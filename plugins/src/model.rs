//! The metric model: InfluxDB's line-protocol model plus a value-type hint.

use std::fmt;

/// Small-string type used for names, tag keys/values and field keys: strings up to 24 bytes
/// live inline, so cloning a typical tag does not allocate.
pub type Str = compact_str::CompactString;

/// `Str::from(s)` for the codecs' hot paths, which build several per metric: a string short
/// enough to live inline is assembled in three 64-bit registers and stored once. (Copying it
/// into a zeroed stack buffer first, with stores of other widths, stalled on every read-back
/// of that buffer: store forwarding fails across stores. That was 8% of the remote-write
/// path's CPU.) `Str::from` calls `memcpy` for its variable length.
#[inline(always)]
pub fn str_from(s: &str) -> Str {
    // compact_str's documented inline layout ("How it works" in its README): the bytes of the
    // string, then, in the last byte, 0xC0 | length; a 24-byte string uses all 24 (its last
    // byte, being UTF-8, is below 0xC0). `str_from_matches_str_from` checks every length;
    // the workspace pins compact_str's exact version.
    const INLINE: usize = std::mem::size_of::<Str>();
    const _: () = assert!(INLINE == 24);
    let b = s.as_bytes();
    let n = b.len();
    if n == 0 || n > INLINE {
        return Str::from(s);
    }
    use crate::codec::wire::load_le;
    let w0 = load_le(&b[..n.min(8)]);
    let w1 = if n > 8 { load_le(&b[8..n.min(16)]) } else { 0 };
    let mut w2 = if n > 16 { load_le(&b[16..]) } else { 0 };
    if n < INLINE {
        w2 |= (0xC0 | n as u64) << 56;
    }
    let words = [w0.to_le(), w1.to_le(), w2.to_le()];
    // SAFETY: `words` holds, in memory order, an inline `Str` in the layout above, holding
    // the `n` bytes of a `str`.
    unsafe { std::mem::transmute::<[u64; 3], Str>(words) }
}

/// The three words of `s`: its inline bytes and length, or its heap pointer, length and
/// capacity. Equal words are equal strings, but not the converse (a string kept on the heap
/// and one inline, or inline bytes beyond the length left over from a longer string), so a
/// comparison of words is a fast path before `==`, and a hash of them may miss equal strings.
#[inline(always)]
pub fn str_words(s: &Str) -> [u64; 3] {
    const _: () = assert!(std::mem::size_of::<Str>() == 24);
    // SAFETY: a `Str` is 24 initialized bytes (compact_str's documented layout, above).
    unsafe { std::mem::transmute_copy(s) }
}

/// `a == b`, quickest when they are equal (see [`str_words`]).
#[inline(always)]
pub fn str_eq(a: &Str, b: &Str) -> bool {
    str_words(a) == str_words(b) || a == b
}

/// A typed field value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    String(Str),
}

impl FieldValue {
    /// The value as a float, for numeric aggregation; strings have none, bools are 0/1.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Int(v) => Some(v as f64),
            FieldValue::UInt(v) => Some(v as f64),
            FieldValue::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            FieldValue::String(_) => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Int(_) => "integer",
            FieldValue::UInt(_) => "unsigned",
            FieldValue::Bool(_) => "boolean",
            FieldValue::String(_) => "string",
        }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::UInt(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::String(v.into())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::String(v.into())
    }
}

/// What kind of value a metric carries, for outputs (Prometheus) that care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ValueType {
    #[default]
    Untyped,
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// One measurement: name, sorted tags, a non-empty field list, a nanosecond timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: Str,
    /// Sorted by key, keys unique. Use [`Metric::add_tag`] to keep that true.
    pub tags: Vec<(Str, Str)>,
    /// In insertion order, keys unique. Use [`Metric::add_field`] to keep that true.
    pub fields: Vec<(Str, FieldValue)>,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    pub kind: ValueType,
}

impl Metric {
    pub fn new(name: impl Into<Str>, time: i64) -> Self {
        Metric {
            name: name.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            time,
            kind: ValueType::Untyped,
        }
    }

    pub fn with_kind(mut self, kind: ValueType) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_tag(mut self, key: impl Into<Str>, value: impl Into<Str>) -> Self {
        self.add_tag(key, value);
        self
    }

    pub fn with_field(mut self, key: impl Into<Str>, value: impl Into<FieldValue>) -> Self {
        self.add_field(key, value);
        self
    }

    /// Sets a tag, replacing any tag with the same key, keeping tags sorted.
    pub fn add_tag(&mut self, key: impl Into<Str>, value: impl Into<Str>) {
        let key = key.into();
        let value = value.into();
        match self
            .tags
            .binary_search_by(|(k, _)| k.as_str().cmp(key.as_str()))
        {
            Ok(i) => self.tags[i].1 = value,
            Err(i) => self.tags.insert(i, (key, value)),
        }
    }

    /// Sets a tag only if the metric does not have it yet (global tags, host tag).
    pub fn add_tag_if_absent(&mut self, key: &str, value: &str) {
        if let Err(i) = self.tags.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            self.tags.insert(i, (key.into(), value.into()));
        }
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.tags[i].1.as_str())
    }

    pub fn remove_tag(&mut self, key: &str) -> Option<Str> {
        self.tags
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.tags.remove(i).1)
    }

    /// Sets a field, replacing any field with the same key.
    pub fn add_field(&mut self, key: impl Into<Str>, value: impl Into<FieldValue>) {
        let key = key.into();
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove_field(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(i).1)
    }

    /// Approximate heap + inline size in bytes, for byte-bounded buffers.
    pub fn estimated_size(&self) -> usize {
        fn s(x: &Str) -> usize {
            if x.is_heap_allocated() {
                24 + x.len()
            } else {
                24
            }
        }
        let mut n = std::mem::size_of::<Metric>() + s(&self.name);
        for (k, v) in &self.tags {
            n += s(k) + s(v);
        }
        for (k, v) in &self.fields {
            n += s(k) + std::mem::size_of::<FieldValue>();
            if let FieldValue::String(x) = v {
                n += s(x);
            }
        }
        n
    }

    /// A key identifying the series (name + tags), for aggregators and caches.
    pub fn series_key(&self) -> SeriesKey {
        SeriesKey {
            name: self.name.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// Name and tags: what identifies a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub name: Str,
    pub tags: Vec<(Str, Str)>,
}

impl fmt::Display for Metric {
    /// Line protocol, for logs and tests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        crate::codec::influx::write_metric(&mut out, self, &Default::default());
        f.write_str(String::from_utf8_lossy(&out).trim_end())
    }
}

/// Metrics kept for the allocations of their tag and field lists. The pipeline gives back
/// the metrics of each batch once the output buffers hold it as records, and the line-protocol
/// parser refills them, so a line costs no allocation (nor a free) for its two lists. The pool
/// keeps only as many as parsers have asked for.
pub mod spare {
    use super::{Metric, Str};
    use std::sync::Mutex;

    /// Emptied metrics, bounded.
    pub struct Pool(Mutex<Kept>);

    struct Kept {
        metrics: Vec<Metric>,
        /// How many may be kept: what was asked for so far, up to `MAX`. Nothing is kept
        /// until a parser asks, so an agent without one (host inputs only) holds nothing.
        room: usize,
    }

    /// Metrics kept at most: a few listener chunks in flight. With lists of at most
    /// `MAX_LIST` entries (48 and 40 bytes each) that is at most 3 MB; typical metrics (a few
    /// tags and fields) take about 1 MB.
    const MAX: usize = 4096;
    /// Lists longer than this are not kept: a rare wide metric must not pin its allocation.
    const MAX_LIST: usize = 8;

    static POOL: Pool = Pool::new();

    impl Pool {
        pub const fn new() -> Self {
            Pool(Mutex::new(Kept {
                metrics: Vec::new(),
                room: 0,
            }))
        }

        /// Keeps the metrics of a batch that is done with, emptied (up to the bound).
        pub fn give_back(&self, mut batch: Vec<Metric>) {
            batch.retain_mut(|m| {
                m.name = Str::default();
                m.tags.clear();
                m.fields.clear();
                m.tags.capacity() <= MAX_LIST && m.fields.capacity() <= MAX_LIST
            });
            let Ok(mut pool) = self.0.lock() else { return };
            let room = pool
                .room
                .saturating_sub(pool.metrics.len())
                .min(batch.len());
            pool.metrics.extend(batch.drain(..room));
            // What did not fit is freed after the lock is released.
            drop(pool);
        }

        /// Moves up to `n` kept metrics into `out`, to be refilled ([`Metric::refill`]).
        pub fn take(&self, n: usize, out: &mut Vec<Metric>) {
            let Ok(mut pool) = self.0.lock() else { return };
            pool.room = pool.room.saturating_add(n).min(MAX);
            let from = pool.metrics.len().saturating_sub(n);
            out.extend(pool.metrics.drain(from..));
        }
    }

    impl Default for Pool {
        fn default() -> Self {
            Self::new()
        }
    }

    /// [`Pool::give_back`] to the process's pool.
    pub fn give_back(batch: Vec<Metric>) {
        POOL.give_back(batch)
    }

    /// [`Pool::take`] from the process's pool.
    pub fn take(n: usize, out: &mut Vec<Metric>) {
        POOL.take(n, out)
    }
}

impl Metric {
    /// Makes a kept metric (see [`spare`]) a new one, in place: it takes the given lists
    /// (`tags` sorted) and leaves its own in their place, emptied. Lists are exchanged, not
    /// copied: a parser fills its scratch lists and hands them over a line at a time.
    pub fn refill(
        &mut self,
        name: Str,
        tags: &mut Vec<(Str, Str)>,
        fields: &mut Vec<(Str, FieldValue)>,
        time: i64,
    ) {
        self.name = name;
        self.tags.clear();
        std::mem::swap(&mut self.tags, tags);
        self.fields.clear();
        std::mem::swap(&mut self.fields, fields);
        self.time = time;
        self.kind = ValueType::Untyped;
    }
}

/// Current time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_with_other_words_are_equal() {
        let mut cut = Str::from("abcdefghij");
        cut.truncate(3);
        let heap = Str::from_string_buffer(String::with_capacity(64) + "abc");
        assert!(heap.is_heap_allocated());
        for s in [&cut, &heap, &Str::from("abc")] {
            assert!(str_eq(s, &str_from("abc")), "{s:?}");
            assert!(!str_eq(s, &str_from("abd")), "{s:?}");
        }
        // Leftover bytes make other words for the same string: the fast path is only a path.
        assert_ne!(str_words(&cut), str_words(&str_from("abc")));
        assert_eq!(str_words(&str_from("abc")), str_words(&Str::from("abc")));
        // A record still holds a tag set whose strings have other words.
        let batch = vec![
            Metric::new("m", 1)
                .with_tag("t", cut.clone())
                .with_field("v", 1.0),
            Metric::new("m", 2).with_tag("t", "x").with_field("v", 2.0),
            Metric::new("m", 3)
                .with_tag("t", "abc")
                .with_field("v", 3.0),
        ];
        let mut buf = Vec::new();
        crate::codec::record::encode(&batch, &mut buf);
        let mut back = Vec::new();
        crate::codec::record::decode(&buf, &mut back).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn str_from_matches_str_from() {
        let text = "abcdefghijklmnopqrstuvwxyz0123456789-é";
        for end in 0..=text.len() {
            if !text.is_char_boundary(end) {
                continue;
            }
            for start in (0..=end).filter(|&i| text.is_char_boundary(i)) {
                let s = &text[start..end];
                let got = str_from(s);
                assert_eq!(got.as_str(), s);
                assert_eq!(got.is_heap_allocated(), s.len() > size_of::<Str>(), "{s:?}");
                assert_eq!(got, Str::from(s));
            }
        }
    }

    #[test]
    fn kept_metrics_are_refilled_clean_and_bounded() {
        let old = || {
            Metric::new("old", 5)
                .with_kind(ValueType::Counter)
                .with_tag("a", "1")
                .with_field("f", "a string longer than twenty-four bytes")
        };
        let mut wide = old();
        wide.fields.reserve(100);
        let pool = spare::Pool::new();
        pool.give_back(vec![old()]);
        let mut kept = Vec::new();
        pool.take(10, &mut kept);
        assert!(kept.is_empty(), "nothing is kept before anyone asks");
        pool.give_back(vec![old(), wide]);
        pool.take(10, &mut kept);
        assert_eq!(kept.len(), 1, "a wide metric's lists are not kept");
        let mut m = kept.pop().unwrap();
        assert!(
            m.tags.is_empty() && m.fields.is_empty(),
            "kept emptied: {m:?}"
        );
        assert!(m.tags.capacity() > 0 && m.fields.capacity() > 0);
        let (mut tags, mut fields) = (
            vec![("b".into(), "2".into())],
            vec![("x".into(), 1i64.into())],
        );
        m.refill("new".into(), &mut tags, &mut fields, 7);
        assert_eq!(
            m,
            Metric::new("new", 7)
                .with_tag("b", "2")
                .with_field("x", 1i64)
        );
        assert!(tags.is_empty() && fields.is_empty());
        // Bounded: a flood of batches keeps a fixed number.
        pool.take(usize::MAX, &mut Vec::new());
        for _ in 0..10 {
            pool.give_back((0..1000).map(|_| old()).collect());
        }
        let mut all = Vec::new();
        pool.take(usize::MAX, &mut all);
        assert_eq!(all.len(), 4096);
    }

    #[test]
    fn tags_stay_sorted_and_unique() {
        let mut m = Metric::new("m", 0);
        m.add_tag("b", "1");
        m.add_tag("a", "2");
        m.add_tag("b", "3");
        assert_eq!(
            m.tags,
            vec![("a".into(), "2".into()), ("b".into(), "3".into())]
        );
        m.add_tag_if_absent("a", "x");
        assert_eq!(m.tag("a"), Some("2"));
        assert_eq!(m.remove_tag("a").as_deref(), Some("2"));
        assert_eq!(m.tag("a"), None);
    }

    #[test]
    fn fields_replace_in_place() {
        let mut m = Metric::new("m", 0)
            .with_field("x", 1i64)
            .with_field("y", 2.0);
        m.add_field("x", true);
        assert_eq!(m.fields[0], ("x".into(), FieldValue::Bool(true)));
        assert_eq!(m.fields.len(), 2);
    }
}
