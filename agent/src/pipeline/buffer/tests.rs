//! One suite for both storages, then what only the disk has: recovery after crashes, torn and
//! corrupt frames, the lock, and a model-based test with injected faults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use sonde_plugins::Metric;
use sonde_plugins::selfstat::Stat;

use super::disk::Fault;
use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sonde-buffer-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn m(i: i64) -> Metric {
    Metric::new("m", i).with_tag("host", "h").with_field("v", i)
}

fn recs(range: std::ops::Range<i64>, chunk: usize) -> Vec<Record> {
    let batch: Vec<Metric> = range.map(m).collect();
    Record::encode_chunks(&batch, chunk)
}

fn times(metrics: &[Metric]) -> Vec<i64> {
    metrics.iter().map(|x| x.time).collect()
}

fn disk_cfg(dir: &Path, limit_bytes: u64) -> DiskConfig {
    DiskConfig {
        dir: dir.to_path_buf(),
        limit_bytes,
        sync: SyncPolicy::Every(Duration::from_secs(1)),
    }
}

/// Both storages, each with a metric bound of `limit` (memory) or a byte bound equivalent
/// to it (disk), and a counter of drops.
fn both(limit: usize, dir: &TempDir) -> Vec<(&'static str, Buffer, Stat)> {
    let per_metric = {
        let r = &recs(0..1, 1)[0];
        16 + r.data.len() as u64
    };
    let d1 = Stat::default();
    let d2 = Stat::default();
    let disk = Buffer::disk(
        &DiskConfig {
            // A segment per 8 metrics: dropping the oldest drops a segment.
            limit_bytes: per_metric * limit as u64,
            ..disk_cfg(dir.path(), 0)
        },
        d2.clone(),
        Stat::default(),
    )
    .unwrap()
    .0;
    vec![
        (
            "memory",
            Buffer::memory(limit, u64::MAX, d1.clone(), Stat::default()),
            d1,
        ),
        ("disk", disk, d2),
    ]
}

#[test]
fn writes_lease_ack_in_order() {
    let dir = TempDir::new();
    for (name, mut b, dropped) in both(1000, &dir) {
        b.push(recs(0..10, 4)).unwrap();
        assert_eq!(b.len(), 10, "{name}");
        // Leases whole records, up to the batch size.
        let first = b.lease(6).unwrap();
        assert_eq!(times(&first), vec![0, 1, 2, 3], "{name}");
        assert_eq!(b.available(), 6, "{name}");
        b.ack().unwrap();
        assert_eq!(b.len(), 6, "{name}");
        let rest = b.lease(100).unwrap();
        assert_eq!(times(&rest), (4..10).collect::<Vec<_>>(), "{name}");
        b.ack().unwrap();
        assert_eq!(b.len(), 0, "{name}");
        assert!(b.lease(100).unwrap().is_empty(), "{name}");
        assert_eq!(dropped.get(), 0, "{name}");
    }
}

#[test]
fn a_failed_write_is_released_and_sent_again() {
    let dir = TempDir::new();
    for (name, mut b, _) in both(1000, &dir) {
        b.push(recs(0..6, 3)).unwrap();
        let first = b.lease(3).unwrap();
        b.push(recs(6..8, 3)).unwrap();
        b.release();
        let again = b.lease(3).unwrap();
        assert_eq!(times(&again), times(&first), "{name}");
        b.ack().unwrap();
        assert_eq!(times(&b.lease(100).unwrap()), vec![3, 4, 5, 6, 7], "{name}");
    }
}

#[test]
fn memory_drops_oldest_by_count_and_by_bytes_and_says_which() {
    let dropped = Stat::default();
    let mut b = Buffer::memory(5, u64::MAX, dropped.clone(), Stat::default());
    b.push(recs(0..8, 1)).unwrap();
    assert_eq!(b.len(), 5);
    assert_eq!(dropped.get(), 3);
    assert_eq!(b.last_limit, Some(Limit::Count(5)));
    assert_eq!(times(&b.lease(10).unwrap()), vec![3, 4, 5, 6, 7]);

    let one = MemoryStore::cost(&recs(0..1, 1)[0]);
    let dropped = Stat::default();
    let mut b = Buffer::memory(1000, one * 4, dropped.clone(), Stat::default());
    b.push(recs(0..10, 1)).unwrap();
    assert_eq!(b.len(), 4);
    assert!(b.bytes() <= one * 4);
    assert_eq!(dropped.get(), 6);
    assert_eq!(b.last_limit, Some(Limit::Bytes(one * 4)));
    assert!(b.would_overflow(&recs(0..1, 1), 0).is_some());
}

#[test]
fn room_is_also_needed_for_what_the_write_still_sends() {
    let new = || Buffer::memory(20, u64::MAX, Stat::default(), Stat::default());
    let mut b = new();
    b.push(recs(0..12, 12)).unwrap();
    let four = recs(20..24, 4);
    assert_eq!(b.would_overflow(&four, 4), None, "12 + 4 + 4 fit in 20");
    assert_eq!(b.would_overflow(&four, 5), Some(Limit::Count(20)));
    // A write larger than half the buffer needs half of it free.
    assert_eq!(b.would_overflow(&four, 1000), Some(Limit::Count(20)));
    let mut half = new();
    half.push(recs(0..10, 10)).unwrap();
    assert_eq!(half.would_overflow(&four, 1000), None);

    // Bytes: what is still to come is taken to be the size of this batch, per metric.
    let cost = MemoryStore::cost(&four[0]);
    let new = || Buffer::memory(1000, cost * 8, Stat::default(), Stat::default());
    let mut b = new();
    for i in 0..5 {
        b.push(recs(30 + i * 4..34 + i * 4, 4)).unwrap();
    }
    assert_eq!(b.bytes(), cost * 5);
    assert_eq!(b.would_overflow(&four, 8), None, "three batches' bytes fit");
    assert_eq!(b.would_overflow(&four, 9), Some(Limit::Bytes(cost * 8)));
    assert_eq!(
        b.would_overflow(&four, 1_000_000),
        Some(Limit::Bytes(cost * 8))
    );
    assert_eq!(
        new().would_overflow(&four, 1_000_000),
        None,
        "half the buffer free"
    );
}

#[test]
fn records_out_for_a_write_go_last_and_only_if_it_fails() {
    let dropped = Stat::default();
    let mut b = Buffer::memory(4, u64::MAX, dropped.clone(), Stat::default());
    b.push(recs(0..4, 2)).unwrap();
    let leased = b.lease(2).unwrap();
    assert_eq!(times(&leased), vec![0, 1]);
    b.push(recs(4..6, 2)).unwrap();
    // 6 metrics for a bound of 4: the oldest not out for a write (2, 3) go.
    assert_eq!(dropped.get(), 2);
    b.ack().unwrap();
    assert_eq!(times(&b.lease(10).unwrap()), vec![4, 5]);
    b.release();
    b.push(recs(6..9, 3)).unwrap();
    // Released, the oldest go first, and only as many as the bound needs (part of a record).
    assert_eq!(times(&b.lease(10).unwrap()), vec![5, 6, 7, 8]);
    assert_eq!(dropped.get(), 3);
}

/// `n` metrics of a realistic shape: a job's probe results.
fn http_checks(n: i64) -> Vec<Metric> {
    (0..n)
        .map(|i| {
            Metric::new("http_check", 1_700_000_000_000_000_000 + i * 1_000_000)
                .with_tag("host", format!("exec-{}", i % 8))
                .with_tag("scenario", format!("s{}", i % 50))
                .with_field("status", 200i64)
                .with_field("duration_ms", i as f64 + 0.5)
        })
        .collect()
}

#[test]
fn memory_bytes_are_the_encoded_size() {
    // 10,000 metrics of a realistic shape take far less than live structs would.
    let batch = http_checks(10_000);
    let live: usize = batch.iter().map(|m| m.estimated_size()).sum();
    let mut b = Buffer::memory(usize::MAX, u64::MAX, Stat::default(), Stat::default());
    b.push(Record::encode_chunks(&batch, 1000)).unwrap();
    assert!(
        (b.bytes() as usize) * 4 < live,
        "encoded {} bytes, live {live}",
        b.bytes()
    );
}

fn is_compressed(rec: &Record) -> bool {
    let mut scratch = Vec::new();
    !std::ptr::eq(
        record::plain(&rec.data, &mut scratch).unwrap().as_ptr(),
        rec.data.as_ptr(),
    )
}

#[test]
fn only_a_backlog_is_compressed() {
    let batch = http_checks(600_000);
    let plain = Record::encode_chunks(&batch, 1000);
    assert!(plain.iter().all(|r| !is_compressed(r)));
    let plain_bytes: u64 = plain.iter().map(|r| r.data.len() as u64).sum();
    assert!(plain_bytes > 2 * PLAIN_BYTES, "{plain_bytes}");
    // A byte limit under 4 × PLAIN_BYTES lowers the threshold to a quarter of it.
    for limit_bytes in [u64::MAX, PLAIN_BYTES] {
        let mut b = Buffer::memory(usize::MAX, limit_bytes, Stat::default(), Stat::default());
        let mut kept = Vec::new();
        for r in plain.clone() {
            // The whole batch must fit the smaller limit: push a few records at a time and
            // take them out again.
            b.push([r]).unwrap();
            if limit_bytes != u64::MAX && b.bytes() > limit_bytes / 2 {
                kept.extend(b.take_all().unwrap());
            }
        }
        kept.extend(b.take_all().unwrap());
        let threshold = PLAIN_BYTES.min(limit_bytes / 4);
        // Records stay plain while what is held before them is under the threshold, and
        // are compressed behind it.
        let first_compressed = kept.iter().position(is_compressed).expect("a backlog");
        let before: u64 = kept[..first_compressed].iter().map(MemoryStore::cost).sum();
        assert!(
            before <= threshold && before + 64 * 1024 > threshold,
            "{before}"
        );
        let mut out = Vec::new();
        for r in &kept {
            record::decode(&r.data, &mut out).unwrap();
        }
        assert_eq!(out, batch);
    }
    // The disk stores records compressed from the first.
    let dir = TempDir::new();
    let (mut d, _) = Buffer::disk(
        &disk_cfg(dir.path(), u64::MAX),
        Stat::default(),
        Stat::default(),
    )
    .unwrap();
    d.push(plain[..2].to_vec()).unwrap();
    let stored = d.lease_records(usize::MAX).unwrap();
    assert!(stored.iter().all(is_compressed));
    assert!(d.bytes() < (plain[0].data.len() + plain[1].data.len()) as u64 / 2);
}

#[test]
fn disk_survives_a_restart_without_sending_twice() {
    let dir = TempDir::new();
    let cfg = disk_cfg(dir.path(), 1 << 20);
    {
        let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
        assert_eq!(rec, Recovery::default());
        b.push(recs(0..10, 2)).unwrap();
        assert_eq!(times(&b.lease(4).unwrap()), vec![0, 1, 2, 3]);
        b.ack().unwrap();
        // Out for a write when the process dies: not acknowledged, so sent again.
        assert_eq!(times(&b.lease(2).unwrap()), vec![4, 5]);
    }
    let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    assert_eq!(rec.metrics, 6);
    assert_eq!(rec.corrupt_records + rec.truncated_bytes, 0);
    assert_eq!(b.len(), 6);
    b.push(recs(10..12, 2)).unwrap();
    assert_eq!(
        times(&b.lease(100).unwrap()),
        vec![4, 5, 6, 7, 8, 9, 10, 11]
    );
    b.ack().unwrap();
    drop(b);
    let (b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    assert_eq!(b.len(), 0);
    assert_eq!(rec.metrics, 0);
    // Delivered segments are gone: only the new, empty one is left.
    let segs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segs, 1);
}

#[test]
fn a_second_process_cannot_share_the_directory() {
    let dir = TempDir::new();
    let cfg = disk_cfg(dir.path(), 1 << 20);
    let _first = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    let err = Buffer::disk(&cfg, Stat::default(), Stat::default())
        .err()
        .expect("locked");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    assert!(
        err.to_string().contains(&std::process::id().to_string()),
        "{err}"
    );
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// A disk buffer in `dir` holding metrics 0..6 in three records: its config, its segment and
/// the segment's bytes.
fn six_metrics_on_disk(dir: &Path) -> (DiskConfig, PathBuf, Vec<u8>) {
    let cfg = disk_cfg(dir, 1 << 20);
    {
        let (mut b, _) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
        b.push(recs(0..6, 2)).unwrap();
    }
    let seg = segments(dir).last().unwrap().clone();
    let data = std::fs::read(&seg).unwrap();
    (cfg, seg, data)
}

#[test]
fn a_torn_tail_is_truncated_and_counted() {
    let dir = TempDir::new();
    let (cfg, seg, mut data) = six_metrics_on_disk(dir.path());
    // A crash in the middle of the next append: half a frame at the end.
    let frame = data.clone();
    data.extend_from_slice(&frame[..frame.len() / 3 / 2]);
    std::fs::write(&seg, &data).unwrap();
    let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    assert_eq!(rec.truncated_bytes, (frame.len() / 6) as u64);
    assert_eq!(rec.metrics, 6);
    assert_eq!(times(&b.lease(100).unwrap()), (0..6).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_record_inside_is_skipped_and_counted() {
    let dir = TempDir::new();
    let (cfg, seg, mut data) = six_metrics_on_disk(dir.path());
    let frame_len = data.len() / 3;
    // Flip a byte in the middle frame's record.
    data[frame_len + 20] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(times(&b.lease(100).unwrap()), vec![0, 1, 4, 5]);
}

#[test]
fn frames_of_the_first_record_version_still_read() {
    let dir = TempDir::new();
    let (cfg, seg, mut data) = six_metrics_on_disk(dir.path());
    // The frames as an older version wrote them (their records use no tag set numbers).
    let at: Vec<usize> = data
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"SRB2")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 3);
    for i in at {
        data[i..i + 4].copy_from_slice(b"SRB1");
    }
    std::fs::write(&seg, &data).unwrap();
    let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    assert_eq!((rec.metrics, rec.corrupt_records), (6, 0));
    assert_eq!(times(&b.lease(100).unwrap()), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn garbage_files_never_stop_the_open() {
    let dir = TempDir::new();
    let cfg = disk_cfg(dir.path(), 1 << 20);
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("00000000000000000003.seg"),
        b"SRB1garbage\xff\xff",
    )
    .unwrap();
    std::fs::write(dir.path().join("position"), b"nonsense").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"left alone").unwrap();
    let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
    assert_eq!(rec.metrics, 0);
    assert_eq!(rec.truncated_bytes, 13);
    b.push(recs(0..2, 2)).unwrap();
    assert_eq!(times(&b.lease(10).unwrap()), vec![0, 1]);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn disk_limit_drops_oldest_segments() {
    let dir = TempDir::new();
    let one = DiskStore::cost(&recs(0..1, 1)[0]);
    let dropped = Stat::default();
    // The smallest segment is 64 KiB: a limit of 3 segments' worth.
    let limit = 3 * (64 << 10);
    let (mut b, _) = Buffer::disk(
        &disk_cfg(dir.path(), limit),
        dropped.clone(),
        Stat::default(),
    )
    .unwrap();
    let n = (limit / one) as i64 * 2;
    for i in 0..n {
        b.push(recs(i..i + 1, 1)).unwrap();
    }
    assert!(b.bytes() <= limit, "{} > {limit}", b.bytes());
    assert_eq!(b.last_limit, Some(Limit::Disk(limit)));
    let kept = b.len() as i64;
    assert_eq!(dropped.get() + kept, n);
    // What is left is the newest, in order.
    let got = b.lease(usize::MAX).unwrap();
    assert_eq!(times(&got), (n - kept..n).collect::<Vec<_>>());
}

#[test]
fn a_failed_disk_write_keeps_nothing_of_it_and_the_buffer_goes_on() {
    let dir = TempDir::new();
    let (mut b, _) = Buffer::disk(
        &disk_cfg(dir.path(), 1 << 20),
        Stat::default(),
        Stat::default(),
    )
    .unwrap();
    b.push(recs(0..2, 2)).unwrap();
    if let Store::Disk(d) = &mut b.store {
        d.fault = Some(Fault::ShortWrite(10));
    }
    assert!(b.push(recs(2..4, 2)).is_err());
    b.push(recs(4..6, 2)).unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(times(&b.lease(10).unwrap()), vec![0, 1, 4, 5]);
}

#[test]
fn moving_records_between_storages_keeps_them() {
    let dir = TempDir::new();
    let mut mem = Buffer::memory(100, u64::MAX, Stat::default(), Stat::default());
    mem.push(recs(0..5, 2)).unwrap();
    let (mut disk, _) = Buffer::disk(
        &disk_cfg(dir.path(), 1 << 20),
        Stat::default(),
        Stat::default(),
    )
    .unwrap();
    disk.push(mem.take_all().unwrap()).unwrap();
    assert_eq!(mem.len(), 0);
    let mut back = Buffer::memory(100, u64::MAX, Stat::default(), Stat::default());
    back.push(disk.take_all().unwrap()).unwrap();
    assert_eq!(disk.len(), 0);
    assert_eq!(times(&back.lease(100).unwrap()), (0..5).collect::<Vec<_>>());
}

/// What the model-based test does next.
#[derive(Clone, Debug)]
enum Op {
    Push(u8, u8),
    Lease(u8),
    Ack,
    Release,
    /// The process dies and starts again.
    Crash,
    /// The next push fails part-way and the store cleans up.
    ShortWrite(u8),
    /// The next push fails part-way and the process dies before it can clean up.
    TornWrite(u8),
    /// fdatasync fails on the next push (under sync-every-write).
    FailSync,
    /// The periodic sync.
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20, 1u8..6).prop_map(|(n, c)| Op::Push(n, c)),
        3 => (1u8..30).prop_map(Op::Lease),
        3 => Just(Op::Ack),
        1 => Just(Op::Release),
        1 => Just(Op::Crash),
        1 => any::<u8>().prop_map(Op::ShortWrite),
        1 => any::<u8>().prop_map(Op::TornWrite),
        1 => Just(Op::FailSync),
        1 => Just(Op::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The disk buffer against a queue: every push that returned Ok is delivered exactly once
    /// and in order, across crashes, short and torn writes and failing syncs, as long as no
    /// bound is hit.
    #[test]
    fn disk_buffer_matches_a_queue_under_faults(ops in proptest::collection::vec(op(), 1..60), always in any::<bool>()) {
        let dir = TempDir::new();
        let cfg = DiskConfig {
            sync: if always { SyncPolicy::Always } else { SyncPolicy::Every(Duration::from_secs(1)) },
            ..disk_cfg(dir.path(), 1 << 30)
        };
        let open = || Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap().0;
        let mut b = open();
        let mut model: std::collections::VecDeque<i64> = Default::default();
        let mut leased: Vec<i64> = Vec::new();
        let mut next = 0i64;
        let mut delivered: Vec<i64> = Vec::new();
        let mut crash_pending = false;
        for op in ops {
            match op {
                Op::Push(n, c) => {
                    let r = recs(next..next + i64::from(n), usize::from(c));
                    // All records of one push go in or (from the failing one on) none do.
                    let mut kept = 0;
                    for rec in r {
                        let cnt = rec.count as i64;
                        match b.push([rec]) {
                            Ok(()) => {
                                model.extend(next + kept..next + kept + cnt);
                                kept += cnt;
                            }
                            Err(_) => break,
                        }
                    }
                    next += i64::from(n);
                    if crash_pending {
                        drop(b);
                        b = open();
                        leased.clear();
                        crash_pending = false;
                    }
                }
                Op::Lease(max) if leased.is_empty() => {
                    let got = times(&b.lease(usize::from(max)).unwrap());
                    let expect: Vec<i64> = model.iter().take(got.len()).copied().collect();
                    prop_assert_eq!(&got, &expect);
                    prop_assert!(got.len() <= usize::from(max) || got.len() <= 5);
                    leased = got;
                }
                Op::Lease(_) => {}
                Op::Ack => {
                    b.ack().unwrap();
                    for _ in 0..leased.len() {
                        delivered.push(model.pop_front().unwrap());
                    }
                    leased.clear();
                }
                Op::Release => {
                    b.release();
                    leased.clear();
                }
                Op::Crash => {
                    drop(b);
                    b = open();
                    leased.clear();
                }
                Op::ShortWrite(k) | Op::TornWrite(k) => {
                    if let Store::Disk(d) = &mut b.store {
                        d.fault = Some(if matches!(op, Op::ShortWrite(_)) {
                            Fault::ShortWrite(usize::from(k))
                        } else {
                            crash_pending = true;
                            Fault::TornWrite(usize::from(k))
                        });
                    }
                }
                Op::FailSync => {
                    if let Store::Disk(d) = &mut b.store {
                        d.fault = Some(Fault::FailSync);
                    }
                }
                Op::Sync => b.sync().unwrap(),
            }
            prop_assert_eq!(b.len(), model.len());
        }
        // Everything still buffered comes out in order.
        b.release();
        let rest = times(&b.lease(usize::MAX).unwrap());
        prop_assert_eq!(rest, model.iter().copied().collect::<Vec<_>>());
        // Nothing was delivered twice or out of order.
        prop_assert!(delivered.windows(2).all(|w| w[0] < w[1]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the directory holds — valid frames, damaged ones, random bytes — the open
    /// succeeds, keeps every valid frame, and the buffer works afterwards.
    #[test]
    fn any_directory_content_opens(
        valid in 0u8..4,
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        position in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let dir = TempDir::new();
        let cfg = disk_cfg(dir.path(), 1 << 20);
        {
            let (mut b, _) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
            b.push(recs(0..i64::from(valid) * 2, 2)).unwrap();
        }
        let seg = segments(dir.path()).last().unwrap().clone();
        let mut data = std::fs::read(&seg).unwrap();
        for (at, byte) in &flips {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= byte | 1;
            }
        }
        data.extend_from_slice(&garbage);
        std::fs::write(&seg, &data).unwrap();
        std::fs::write(dir.path().join("position"), &position).unwrap();
        let (mut b, rec) = Buffer::disk(&cfg, Stat::default(), Stat::default()).unwrap();
        if flips.is_empty() {
            // Undamaged frames are all kept; only the appended garbage may go.
            prop_assert_eq!(rec.metrics, u64::from(valid) * 2);
            prop_assert!(rec.truncated_bytes <= garbage.len() as u64);
        }
        let before = b.len();
        b.push(recs(100..102, 2)).unwrap();
        let got = times(&b.lease(usize::MAX).unwrap());
        prop_assert_eq!(got.len(), before + 2);
        prop_assert_eq!(&got[got.len() - 2..], &[100, 101]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The memory buffer against a queue, records shared with a second buffer (another output
    /// taking the batch unchanged): each delivers every metric exactly once and in order,
    /// across leases, acknowledgements and released (failed) writes.
    #[test]
    fn memory_buffers_sharing_records_match_a_queue(ops in proptest::collection::vec(op(), 1..60)) {
        let mut bufs = [(); 2].map(|_| Buffer::memory(1 << 20, u64::MAX, Stat::default(), Stat::default()));
        let mut leased = [0usize; 2];
        let mut delivered: [Vec<Metric>; 2] = Default::default();
        let mut sent: Vec<Metric> = Vec::new();
        let mut pending: [Vec<Metric>; 2] = Default::default();
        for (i, op) in ops.into_iter().enumerate() {
            let k = i % 2;
            match op {
                Op::Push(n, c) => {
                    let batch: Vec<Metric> = (0..i64::from(n)).map(|j| m(sent.len() as i64 + j)).collect();
                    sent.extend(batch.iter().cloned());
                    let r = Record::encode_chunks(&batch, usize::from(c));
                    bufs[0].push(r.clone()).unwrap();
                    bufs[1].push(r).unwrap();
                }
                Op::Lease(max) if leased[k] == 0 => {
                    pending[k] = bufs[k].lease(usize::from(max)).unwrap();
                    leased[k] = pending[k].len();
                }
                Op::Ack | Op::Sync => {
                    bufs[k].ack().unwrap();
                    delivered[k].append(&mut pending[k]);
                    leased[k] = 0;
                }
                _ => {
                    bufs[k].release();
                    pending[k].clear();
                    leased[k] = 0;
                }
            }
        }
        for k in 0..2 {
            bufs[k].ack().unwrap();
            delivered[k].append(&mut pending[k]);
            delivered[k].extend(bufs[k].lease(usize::MAX).unwrap());
            prop_assert_eq!(&delivered[k], &sent);
        }
    }
}
