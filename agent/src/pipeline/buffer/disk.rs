//! The disk storage of an output buffer: records in segment files, so that what was
//! acknowledged survives a crash, a kill -9 or a restart.
//!
//! A directory per output holds:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files of frames, oldest first. A frame is
//!   `"SRB2" len:u32 count:u32 crc:u32 record` (little endian; the CRC-32 covers len, count
//!   and the record; "SRB1" frames, from before records had tag set numbers, still read).
//!   A new segment starts at every open and whenever the active one is full.
//! - `position`: where the next unwritten record starts (`"SRP1" segment offset consumed
//!   crc`), so a restart does not send again what was already delivered.
//! - `lock`: held (flock) while a process uses the directory.
//!
//! Opening always succeeds on damaged data: a torn frame at the end of a segment (a crash in
//! the middle of a write) is truncated, a corrupt frame inside is skipped, and both are counted.
//! Segments are deleted once every record in them was acknowledged.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Record;

/// Frames of records that may refer to a tag set by its number (older versions skip them
/// as corrupt, counted, rather than misread them).
const FRAME_MAGIC: &[u8; 4] = b"SRB2";
/// Frames written before tag set numbers existed: read as before.
const FRAME_MAGIC_V1: &[u8; 4] = b"SRB1";
const POSITION_MAGIC: &[u8; 4] = b"SRP1";
const HEADER: u64 = 16;
const POSITION_LEN: usize = 32;
/// A record never gets near this; a larger length field is corruption.
const MAX_RECORD: u32 = 1 << 30;

/// When appended records are forced to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync after every append, before the append is acknowledged.
    Always,
    /// fdatasync at most this often. A kill -9 loses nothing (the data is in the page cache);
    /// a power loss may lose the last interval.
    Every(Duration),
}

#[derive(Clone, Debug)]
pub struct DiskConfig {
    pub dir: PathBuf,
    pub limit_bytes: u64,
    pub sync: SyncPolicy,
}

/// What opening found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub metrics: u64,
    pub corrupt_records: u64,
    pub truncated_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    seg: u64,
    offset: u64,
    /// Metrics before `offset` in this segment.
    consumed: u64,
}

struct Segment {
    id: u64,
    bytes: u64,
    metrics: u64,
}

pub struct DiskStore {
    dir: PathBuf,
    _lock: File,
    /// Never empty; the last one is written to.
    segments: VecDeque<Segment>,
    writer: File,
    reader: Option<(u64, File)>,
    /// Always in the first segment.
    committed: Pos,
    /// Where the leased records end.
    lease: Option<Pos>,
    segment_max: u64,
    sync: SyncPolicy,
    position: File,
    dirty: bool,
    frame: Vec<u8>,
    /// Corrupt records skipped while reading (after the open).
    pub corrupt_records: u64,
    /// The next append fails this way (tests inject I/O faults here).
    #[cfg(test)]
    pub fault: Option<Fault>,
}

/// An injected I/O fault.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The write stops after this many bytes and fails; the store cleans up as it would.
    ShortWrite(usize),
    /// The write stops after this many bytes and the process dies: the caller drops the store
    /// without letting it clean up, and the partial frame stays in the file.
    TornWrite(usize),
    /// fdatasync fails.
    FailSync,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn crc(len: u32, count: u32, record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&count.to_le_bytes());
    h.update(record);
    h.finalize()
}

/// A valid frame at `offset` of `data`: (record length, metric count).
fn frame_in(data: &[u8], offset: usize) -> Option<(usize, u32)> {
    let h = data.get(offset..offset + HEADER as usize)?;
    if !is_frame_magic(&h[0..4]) {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap());
    let count = u32::from_le_bytes(h[8..12].try_into().unwrap());
    let sum = u32::from_le_bytes(h[12..16].try_into().unwrap());
    if len > MAX_RECORD {
        return None;
    }
    let start = offset + HEADER as usize;
    let record = data.get(start..start + len as usize)?;
    (crc(len, count, record) == sum).then_some((len as usize, count))
}

fn is_frame_magic(m: &[u8]) -> bool {
    m == FRAME_MAGIC || m == FRAME_MAGIC_V1
}

/// The next valid frame after an invalid one at `offset`, if any.
fn resync(data: &[u8], offset: usize) -> Option<usize> {
    let mut from = offset + 1;
    // What both magics begin with; `frame_in` checks the rest.
    let prefix = &FRAME_MAGIC[..3];
    while let Some(i) = memchr::memmem::find(&data[from.min(data.len())..], prefix) {
        let at = from + i;
        if frame_in(data, at).is_some() {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

impl DiskStore {
    /// Opens (creating) the buffer directory, recovering what an earlier process left.
    pub fn open(cfg: &DiskConfig) -> io::Result<(DiskStore, Recovery)> {
        let dir = cfg.dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(|e| with_path(e, "cannot create", &dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| with_path(e, "cannot open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path).unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "buffer directory {} is in use by another process (pid {})",
                        dir.display(),
                        holder.trim()
                    ),
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(with_path(e, "cannot lock", &lock_path)),
        }
        lock.set_len(0)?;
        lock.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let position_path = dir.join("position");
        let position = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&position_path)?;
        let mut saved = [0u8; POSITION_LEN];
        let saved = match position.read_exact_at(&mut saved, 0) {
            Ok(()) => parse_position(&saved),
            Err(_) => None,
        };

        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut committed = None;
        for id in ids {
            let path = segment_path(&dir, id);
            // Segments wholly before the saved position were delivered (their deletion was
            // cut short).
            if saved.is_some_and(|p| id < p.seg) {
                let _ = fs::remove_file(&path);
                continue;
            }
            let data = fs::read(&path)?;
            let resume_at = saved.filter(|p| p.seg == id).map(|p| p.offset);
            let mut offset = 0usize;
            let mut metrics = 0u64;
            let mut valid_end = 0usize;
            // The last frame boundary at or before the saved offset, and the metrics before
            // it: resuming there may repeat a record, never skip one.
            let mut resume = (0u64, 0u64);
            while offset < data.len() {
                if resume_at.is_some_and(|r| offset as u64 <= r) {
                    resume = (offset as u64, metrics);
                }
                match frame_in(&data, offset) {
                    Some((len, count)) => {
                        metrics += u64::from(count);
                        offset += HEADER as usize + len;
                        valid_end = offset;
                    }
                    None => match resync(&data, offset) {
                        Some(next) => {
                            recovery.corrupt_records += 1;
                            offset = next;
                        }
                        None => break,
                    },
                }
            }
            if valid_end < data.len() {
                // A torn write at the end (or garbage with no valid frame after it).
                recovery.truncated_bytes += (data.len() - valid_end) as u64;
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid_end as u64)?;
                f.sync_all()?;
            }
            if resume_at.is_some_and(|r| r >= valid_end as u64) {
                resume = (valid_end as u64, metrics);
            }
            if metrics == 0 || resume.0 >= valid_end as u64 {
                // Empty, or everything in it was delivered.
                fs::remove_file(&path)?;
                continue;
            }
            if committed.is_none() {
                let (offset, consumed) = resume;
                committed = Some(Pos {
                    seg: id,
                    offset,
                    consumed,
                });
            }
            recovery.metrics += metrics;
            segments.push_back(Segment {
                id,
                bytes: valid_end as u64,
                metrics,
            });
        }
        if let Some(c) = committed {
            recovery.metrics -= c.consumed;
        }
        recovery.segments = segments.len();

        // Appends always go to a new segment, never after what a crash may have left.
        let next_id = segments
            .back()
            .map_or_else(|| saved.map_or(0, |p| p.seg + 1), |s: &Segment| s.id + 1);
        let writer = create_segment(&dir, next_id)?;
        segments.push_back(Segment {
            id: next_id,
            bytes: 0,
            metrics: 0,
        });
        let committed = committed.unwrap_or(Pos {
            seg: segments[0].id,
            offset: 0,
            consumed: 0,
        });
        let mut store = DiskStore {
            dir,
            _lock: lock,
            segments,
            writer,
            reader: None,
            committed,
            lease: None,
            segment_max: (cfg.limit_bytes / 8).clamp(64 << 10, 64 << 20),
            sync: cfg.sync,
            position,
            dirty: false,
            frame: Vec::new(),
            corrupt_records: 0,
            #[cfg(test)]
            fault: None,
        };
        store.save_position()?;
        store.position.sync_data()?;
        sync_dir(&store.dir)?;
        Ok((store, recovery))
    }

    pub fn metrics(&self) -> u64 {
        self.segments.iter().map(|s| s.metrics).sum::<u64>() - self.committed.consumed
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn cost(rec: &Record) -> u64 {
        HEADER + rec.data.len() as u64
    }

    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    pub fn set_sync_policy(&mut self, sync: SyncPolicy) {
        self.sync = sync;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record; once this returns it is in the file (and on the disk under
    /// [`SyncPolicy::Always`]). A failed write leaves the file as it was.
    pub fn append(&mut self, rec: &Record) -> io::Result<()> {
        let len = rec.data.len() as u32;
        self.frame.clear();
        self.frame.extend_from_slice(FRAME_MAGIC);
        self.frame.extend_from_slice(&len.to_le_bytes());
        self.frame.extend_from_slice(&rec.count.to_le_bytes());
        self.frame
            .extend_from_slice(&crc(len, rec.count, &rec.data).to_le_bytes());
        self.frame.extend_from_slice(&rec.data);
        let active = self.segments.back().expect("never empty");
        if active.bytes > 0 && active.bytes + self.frame.len() as u64 > self.segment_max {
            self.rotate()?;
        }
        let at = self.segments.back().expect("never empty").bytes;
        #[cfg(test)]
        if let Some(fault) = self.fault.take() {
            let injected = || io::Error::other("injected fault");
            match fault {
                Fault::ShortWrite(n) => {
                    self.writer
                        .write_all_at(&self.frame[..n.min(self.frame.len() - 1)], at)?;
                    let _ = self.writer.set_len(at);
                    return Err(injected());
                }
                Fault::TornWrite(n) => {
                    self.writer
                        .write_all_at(&self.frame[..n.min(self.frame.len() - 1)], at)?;
                    return Err(injected());
                }
                Fault::FailSync if self.sync == SyncPolicy::Always => {
                    self.writer.write_all_at(&self.frame, at)?;
                    let _ = self.writer.set_len(at);
                    return Err(injected());
                }
                Fault::FailSync => {}
            }
        }
        let active = self.segments.back_mut().expect("never empty");
        if let Err(e) = self.writer.write_all_at(&self.frame, at) {
            // Cut off whatever part of the frame made it, so the next append follows a whole
            // frame.
            let _ = self.writer.set_len(at);
            return Err(e);
        }
        if self.sync == SyncPolicy::Always
            && let Err(e) = self.writer.sync_data()
        {
            let _ = self.writer.set_len(active.bytes);
            return Err(e);
        }
        active.bytes += self.frame.len() as u64;
        active.metrics += u64::from(rec.count);
        self.dirty = true;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.writer.sync_data()?;
        let id = self.segments.back().expect("never empty").id + 1;
        self.writer = create_segment(&self.dir, id)?;
        if self.sync == SyncPolicy::Always {
            sync_dir(&self.dir)?;
        }
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            metrics: 0,
        });
        Ok(())
    }

    /// Handles to sync outside the buffer's lock (the periodic sync), when anything changed
    /// since the last sync: the active segment and the position file.
    pub fn pending_sync(&mut self) -> io::Result<Option<(File, File)>> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        Ok(Some((self.writer.try_clone()?, self.position.try_clone()?)))
    }

    /// Forces what was appended (and the read position) to the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.writer.sync_data()?;
            self.position.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Reads the records after the committed position, up to `max` metrics (at least one
    /// record when there is one); they stay on disk until [`DiskStore::ack`].
    pub fn lease(&mut self, max: usize) -> io::Result<Vec<Record>> {
        let mut pos = self.committed;
        let mut out = Vec::new();
        let mut n = 0usize;
        let mut header = [0u8; HEADER as usize];
        while let Some(i) = self.segments.iter().position(|s| s.id == pos.seg) {
            let seg_bytes = self.segments[i].bytes;
            if pos.offset >= seg_bytes {
                match self.segments.get(i + 1) {
                    Some(next) => {
                        pos = Pos {
                            seg: next.id,
                            offset: 0,
                            consumed: 0,
                        };
                        continue;
                    }
                    None => break,
                }
            }
            let file = self.reader_for(pos.seg)?;
            file.read_exact_at(&mut header, pos.offset)?;
            let len = u32::from_le_bytes(header[4..8].try_into().unwrap());
            let count = u32::from_le_bytes(header[8..12].try_into().unwrap());
            if !out.is_empty() && n + count as usize > max {
                break;
            }
            let end = pos.offset + HEADER + u64::from(len);
            let valid = is_frame_magic(&header[0..4]) && len <= MAX_RECORD && end <= seg_bytes;
            let mut data = vec![0u8; if valid { len as usize } else { 0 }];
            if valid {
                file.read_exact_at(&mut data, pos.offset + HEADER)?;
            }
            let sum = u32::from_le_bytes(header[12..16].try_into().unwrap());
            if !valid || crc(len, count, &data) != sum {
                // Damaged since it was written (the open checked it): skip to the next frame.
                self.corrupt_records += 1;
                let rest = {
                    let mut rest = vec![0u8; (seg_bytes - pos.offset) as usize];
                    self.reader_for(pos.seg)?
                        .read_exact_at(&mut rest, pos.offset)?;
                    rest
                };
                pos.offset = match resync(&rest, 0) {
                    Some(next) => pos.offset + next as u64,
                    None => seg_bytes,
                };
                continue;
            }
            n += count as usize;
            out.push(Record {
                data: Arc::from(data),
                count,
            });
            pos.offset = end;
            pos.consumed += u64::from(count);
        }
        self.lease = Some(pos);
        Ok(out)
    }

    fn reader_for(&mut self, seg: u64) -> io::Result<&File> {
        if self.reader.as_ref().is_none_or(|(id, _)| *id != seg) {
            let f = File::open(segment_path(&self.dir, seg))?;
            self.reader = Some((seg, f));
        }
        Ok(&self.reader.as_ref().expect("just opened").1)
    }

    /// The leased records were delivered: the position moves past them and segments wholly
    /// delivered are deleted.
    pub fn ack(&mut self) -> io::Result<()> {
        let Some(pos) = self.lease.take() else {
            return Ok(());
        };
        self.committed = pos;
        while self.segments.len() > 1 {
            let front = &self.segments[0];
            if front.id < self.committed.seg
                || (front.id == self.committed.seg && self.committed.offset >= front.bytes)
            {
                let id = front.id;
                self.remove_front()?;
                if id == self.committed.seg {
                    self.committed = Pos {
                        seg: self.segments[0].id,
                        offset: 0,
                        consumed: 0,
                    };
                }
            } else {
                break;
            }
        }
        // Everything delivered: the active segment starts over rather than growing (and, on a
        // full disk, so that space comes back). Truncated before the position is saved: a
        // crash in between finds an empty segment, not a replay.
        let single = self.segments.len() == 1;
        let active = self.segments.back_mut().expect("never empty");
        if single && active.bytes > 0 && self.committed.offset >= active.bytes {
            self.writer.set_len(0)?;
            active.bytes = 0;
            active.metrics = 0;
            self.committed = Pos {
                seg: active.id,
                offset: 0,
                consumed: 0,
            };
        }
        self.save_position()
    }

    pub fn release(&mut self) {
        self.lease = None;
    }

    fn remove_front(&mut self) -> io::Result<()> {
        let seg = self.segments.pop_front().expect("checked");
        if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.reader = None;
        }
        match fs::remove_file(segment_path(&self.dir, seg.id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Drops the oldest segment (a write in flight from it counts as dropped); returns the
    /// metrics dropped, or `None` when nothing is buffered.
    pub fn drop_oldest(&mut self) -> io::Result<Option<u64>> {
        if self.segments.len() == 1 {
            if self.segments[0].bytes == 0 {
                return Ok(None);
            }
            self.rotate()?;
        }
        let dropped = self.segments[0].metrics - self.committed.consumed;
        self.remove_front()?;
        self.lease = None;
        self.committed = Pos {
            seg: self.segments[0].id,
            offset: 0,
            consumed: 0,
        };
        self.save_position()?;
        Ok(Some(dropped))
    }

    /// Everything buffered, removed from the disk (a reload that changes the storage).
    pub fn take_all(&mut self) -> io::Result<Vec<Record>> {
        let records = self.lease(usize::MAX)?;
        self.ack()?;
        Ok(records)
    }

    fn save_position(&mut self) -> io::Result<()> {
        let mut buf = [0u8; POSITION_LEN];
        buf[0..4].copy_from_slice(POSITION_MAGIC);
        buf[4..12].copy_from_slice(&self.committed.seg.to_le_bytes());
        buf[12..20].copy_from_slice(&self.committed.offset.to_le_bytes());
        buf[20..28].copy_from_slice(&self.committed.consumed.to_le_bytes());
        let sum = crc32fast::hash(&buf[0..28]);
        buf[28..32].copy_from_slice(&sum.to_le_bytes());
        self.position.write_all_at(&buf, 0)?;
        self.dirty = true;
        Ok(())
    }
}

fn parse_position(buf: &[u8; POSITION_LEN]) -> Option<Pos> {
    if &buf[0..4] != POSITION_MAGIC
        || crc32fast::hash(&buf[0..28]) != u32::from_le_bytes(buf[28..32].try_into().unwrap())
    {
        return None;
    }
    let u = |r: std::ops::Range<usize>| u64::from_le_bytes(buf[r].try_into().unwrap());
    Some(Pos {
        seg: u(4..12),
        offset: u(12..20),
        consumed: u(20..28),
    })
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let path = segment_path(dir, id);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&path)
        .map_err(|e| with_path(e, "cannot create", &path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}
