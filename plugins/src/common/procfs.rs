//! One read per tick of a /proc file that several inputs parse: /proc/stat (cpu, system,
//! kernel) and /proc/meminfo (mem, swap).
//!
//! A tick is identified by the gather's timestamp ([`crate::plugin::Accumulator::time`]): the
//! agent gives every polled input woken by one tick of an interval the same timestamp, so the
//! first of them to need the file reads it and the others of that tick parse the same text.
//! A later tick has a later timestamp and reads the file again. The content also expires after
//! [`MAX_AGE`], so a caller that reuses one timestamp for gathers far apart (a test, a one-shot
//! run) is never served an old copy for long.
//!
//! Files are found by path, so inputs with other `HOST_PROC` roots (fixture trees in tests)
//! never share content with the host's.
//!
//! [`ProcFile`] keeps a /proc file open and reads it again from offset 0 at each gather (the
//! kernel generates the content afresh on a read at offset 0): no path walk, no open/close
//! and no fstat/lseek per gather.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long one read serves its tick at most. The inputs of one tick gather within a few
/// milliseconds of each other; one that runs later than this reads the file afresh.
pub const MAX_AGE: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Slot {
    /// The tick whose content `buf` holds, and when it was read; `None` after a failed read.
    tick: Option<(i64, Instant)>,
    /// The file's content, its allocation reused from tick to tick.
    buf: String,
    /// The file, kept open.
    file: Option<File>,
    /// Reads of the file so far (for tests).
    reads: u64,
}

/// Every shared file in use, by path. Entries whose last reader is gone are dropped on the
/// next registration.
static FILES: Mutex<Vec<(PathBuf, Weak<Mutex<Slot>>)>> = Mutex::new(Vec::new());

/// A handle on a /proc file whose content is shared by every handle on the same path within
/// one tick. Cheap to hold: create it once, when the input is built.
pub struct SharedFile {
    path: PathBuf,
    slot: Arc<Mutex<Slot>>,
}

impl SharedFile {
    pub fn new(path: PathBuf) -> Self {
        let mut files = FILES.lock().unwrap_or_else(PoisonError::into_inner);
        files.retain(|(_, w)| w.strong_count() > 0);
        let found = files
            .iter()
            .find(|(p, _)| *p == path)
            .and_then(|(_, w)| w.upgrade());
        let slot = found.unwrap_or_else(|| {
            let s = Arc::new(Mutex::new(Slot::default()));
            files.push((path.clone(), Arc::downgrade(&s)));
            s
        });
        SharedFile { path, slot }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` with the file's content for the tick `tick` (the accumulator's time), reading
    /// the file only if no handle on it has read it for this tick yet. Other inputs needing the
    /// file wait while `f` runs: keep it to parsing.
    pub fn with<R>(&self, tick: i64, f: impl FnOnce(&str) -> R) -> io::Result<R> {
        // A panic in another reader's `f` leaves the content intact: the lock stays usable.
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = matches!(slot.tick, Some((t, at)) if t == tick && at.elapsed() < MAX_AGE);
        if !fresh {
            slot.tick = None;
            let slot = &mut *slot;
            read_kept(&mut slot.file, &self.path, &mut slot.buf)?;
            slot.tick = Some((tick, Instant::now()));
            slot.reads += 1;
        }
        Ok(f(&slot.buf))
    }

    /// Like [`SharedFile::with`], with the error as a message naming the file (for
    /// `acc.add_error`).
    pub fn with_or_err<R>(&self, tick: i64, f: impl FnOnce(&str) -> R) -> Result<R, String> {
        self.with(tick, f)
            .map_err(|e| format!("reading {}: {e}", self.path.display()))
    }

    /// How many times the file was actually read, by all handles on its path.
    pub fn reads(&self) -> u64 {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reads
    }
}

/// A /proc (or /sys) file kept open between gathers and read whole from offset 0 each time.
/// Any error closes it, so the next read opens the path afresh.
pub struct ProcFile {
    path: PathBuf,
    file: Option<File>,
    /// The kept file is on procfs (see [`ProcFile::read_mounts_if_changed`]).
    on_procfs: bool,
}

impl ProcFile {
    pub fn new(path: PathBuf) -> Self {
        ProcFile {
            path,
            file: None,
            on_procfs: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole file into `buf` (its allocation reused).
    pub fn read(&mut self, buf: &mut String) -> io::Result<()> {
        read_kept(&mut self.file, &self.path, buf)
    }

    /// For a mount table (/proc/<pid>/mountinfo or mounts): reads it into `buf` unless it is
    /// unchanged since the last successful read into `buf`, which then still holds it (the
    /// caller must not write to `buf` in between). Returns whether it read.
    ///
    /// The kernel flags an open mount table with POLLPRI when anything is mounted or unmounted
    /// in its namespace (proc(5); what libmount and systemd watch), so an unchanged table costs
    /// one poll instead of the kernel formatting every mount again (hundreds on a Kubernetes
    /// node). Files not on procfs (fixture trees) give no such signal and are read every time.
    pub fn read_mounts_if_changed(&mut self, buf: &mut String) -> io::Result<bool> {
        // A mount table is never empty: an empty `buf` is not one we filled.
        if let Some(f) = &self.file
            && self.on_procfs
            && !buf.is_empty()
            && !mount_table_changed(f)
        {
            return Ok(false);
        }
        self.on_procfs = false;
        self.read(buf)?;
        self.on_procfs = self.file.as_ref().is_some_and(is_on_procfs);
        Ok(true)
    }

    /// Like [`ProcFile::read`], with the error as a message naming the file.
    pub fn read_or_err(&mut self, buf: &mut String) -> Result<(), String> {
        self.read(buf)
            .map_err(|e| format!("reading {}: {e}", self.path.display()))
    }
}

/// Whether a kept mount table was flagged as changed since it was opened or last polled (any
/// poll failure counts as a change: the caller then reads).
fn mount_table_changed(f: &File) -> bool {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait. Non-zero: POLLPRI (or POLLERR/POLLNVAL), or failed.
    unsafe { libc::poll(&mut p, 1, 0) != 0 }
}

/// Whether an open file or directory is on procfs (not a fixture tree standing in for it).
pub fn is_on_procfs(f: &impl AsRawFd) -> bool {
    // statfs(2); `f_type`'s integer type differs between libcs.
    const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    // SAFETY: st is a plain out-parameter for fstatfs on a valid descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) == 0 && st.f_type as u64 == PROC_SUPER_MAGIC }
}

/// Reads `path` whole into `buf` through the kept `file`, opening it if needed. A kept file
/// that fails is reopened once (a read error on a fresh one is returned).
fn read_kept(file: &mut Option<File>, path: &Path, buf: &mut String) -> io::Result<()> {
    if let Some(f) = file.as_ref() {
        match read_at0(f, buf) {
            Ok(()) => return Ok(()),
            Err(_) => *file = None,
        }
    }
    let f = File::open(path)?;
    read_at0(&f, buf)?;
    *file = Some(f);
    Ok(())
}

/// Reads a whole file from offset 0 into `buf`, until a read returns nothing. Unlike
/// `read_to_string`, asks the kernel for no size hint (fstat and lseek, useless on /proc).
pub fn read_at0(f: &File, buf: &mut String) -> io::Result<()> {
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    let r = fill_from(f, &mut bytes);
    match String::from_utf8(bytes) {
        Ok(s) => {
            *buf = s;
            r
        }
        Err(e) => {
            // Keep the allocation for the next read.
            let mut v = e.into_bytes();
            v.clear();
            *buf = String::from_utf8(v).unwrap_or_default();
            r?;
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        }
    }
}

fn fill_from(f: &File, bytes: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let len = bytes.len();
        if bytes.capacity() - len < 1024 {
            bytes.reserve(bytes.capacity().max(4096));
        }
        bytes.resize(bytes.capacity(), 0);
        let r = f.read_at(&mut bytes[len..], len as u64);
        match r {
            Ok(0) => {
                bytes.truncate(len);
                return Ok(());
            }
            Ok(n) => bytes.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes.truncate(len),
            Err(e) => {
                bytes.truncate(len);
                return Err(e);
            }
        }
    }
}

/// Reads a whole (small) file by path into `buf`, reusing its allocation (for files not worth
/// keeping open).
pub fn read_path(path: &Path, buf: &mut String) -> io::Result<()> {
    read_at0(&File::open(path)?, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("sonde-procfs-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn two_readers_in_one_tick_read_once_and_a_new_tick_rereads() {
        let d = Dir::new("tick");
        let path = d.0.join("stat");
        std::fs::write(&path, "cpu 1 2 3 4\n").unwrap();
        // Two inputs' handles on one file (e.g. cpu and kernel on /proc/stat).
        let a = SharedFile::new(path.clone());
        let b = SharedFile::new(path.clone());
        assert_eq!(a.with(100, str::to_string).unwrap(), "cpu 1 2 3 4\n");
        std::fs::write(&path, "cpu 5 6 7 8\n").unwrap();
        // Same tick: b gets a's read, not the file's new content.
        assert_eq!(b.with(100, str::to_string).unwrap(), "cpu 1 2 3 4\n");
        assert_eq!(a.reads(), 1);
        assert_eq!(b.reads(), 1);
        // Next tick: read again, by whichever comes first.
        assert_eq!(b.with(200, str::to_string).unwrap(), "cpu 5 6 7 8\n");
        assert_eq!(a.with(200, str::len).unwrap(), 12);
        assert_eq!(a.reads(), 2);
    }

    #[test]
    fn other_paths_are_not_shared() {
        let d = Dir::new("paths");
        std::fs::write(d.0.join("x"), "x").unwrap();
        std::fs::write(d.0.join("y"), "y").unwrap();
        let x = SharedFile::new(d.0.join("x"));
        let y = SharedFile::new(d.0.join("y"));
        assert_eq!(x.with(1, str::to_string).unwrap(), "x");
        assert_eq!(y.with(1, str::to_string).unwrap(), "y");
        assert_eq!((x.reads(), y.reads()), (1, 1));
    }

    #[test]
    fn a_reused_timestamp_expires() {
        let d = Dir::new("age");
        let path = d.0.join("meminfo");
        std::fs::write(&path, "a").unwrap();
        let f = SharedFile::new(path.clone());
        assert_eq!(f.with(7, str::to_string).unwrap(), "a");
        std::fs::write(&path, "b").unwrap();
        std::thread::sleep(MAX_AGE + Duration::from_millis(20));
        assert_eq!(f.with(7, str::to_string).unwrap(), "b");
        assert_eq!(f.reads(), 2);
    }

    #[test]
    fn a_failed_read_is_an_error_every_time_and_not_cached() {
        let d = Dir::new("err");
        let path = d.0.join("missing");
        let f = SharedFile::new(path.clone());
        let e = f.with_or_err(1, |_| ()).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        assert!(f.with(1, |_| ()).is_err());
        // The file appears within the same tick: the next reader gets it.
        std::fs::write(&path, "now").unwrap();
        assert_eq!(f.with(1, str::to_string).unwrap(), "now");
        assert_eq!(f.reads(), 1);
    }

    #[test]
    fn handles_dropped_and_recreated_start_afresh() {
        let d = Dir::new("drop");
        let path = d.0.join("f");
        std::fs::write(&path, "1").unwrap();
        let f = SharedFile::new(path.clone());
        f.with(1, |_| ()).unwrap();
        drop(f);
        let g = SharedFile::new(path);
        assert_eq!(g.reads(), 0);
    }

    #[test]
    fn kept_file_rereads_from_the_start_and_reopens_after_an_error() {
        let d = Dir::new("kept");
        let path = d.0.join("loadavg");
        std::fs::write(&path, "0.5 0.25").unwrap();
        let mut f = ProcFile::new(path.clone());
        let mut buf = String::new();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "0.5 0.25");
        // Rewritten in place, shorter: the whole new content, nothing of the old.
        std::fs::write(&path, "1.0").unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "1.0");
        // Larger than any initial buffer.
        let big = "x".repeat(100_000);
        std::fs::write(&path, &big).unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, big);
        // Not text: an error, and the next good content reads fine.
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(
            f.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        std::fs::write(&path, "ok").unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "ok");
        // A missing file names itself.
        let mut m = ProcFile::new(d.0.join("nope"));
        assert!(m.read_or_err(&mut buf).unwrap_err().contains("nope"));
        // Real /proc files read whole, again and again, from a kept descriptor.
        let mut stat = ProcFile::new("/proc/stat".into());
        for _ in 0..3 {
            stat.read(&mut buf).unwrap();
            assert!(buf.starts_with("cpu ") && buf.contains("\nbtime "), "{buf}");
        }
        let mut mi = ProcFile::new("/proc/self/mountinfo".into());
        mi.read(&mut buf).unwrap();
        let want = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(buf.lines().count(), want.lines().count());
    }

    #[test]
    fn real_proc_stat_is_shared_across_threads() {
        let a = SharedFile::new("/proc/stat".into());
        // A tick nobody else uses (other tests may read /proc/stat too).
        let tick = i64::MIN + 12345;
        let texts: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| SharedFile::new("/proc/stat".into()).with(tick, str::to_string))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        assert!(texts[0].starts_with("cpu "), "{}", texts[0]);
        assert!(texts.iter().all(|t| *t == texts[0]));
        drop(a);
    }

    #[test]
    fn mount_table_is_read_again_only_after_a_mount_change() {
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        let d = Dir::new("mounts");
        let target = d.0.join("mnt");
        std::fs::create_dir_all(&target).unwrap();
        // A child in a mount namespace of its own mounts a tmpfs when told to: its mountinfo
        // changes, nothing of this machine's does.
        let script = format!(
            "echo ready; read _; mount -t tmpfs sonde-procfs-test '{}' && echo mounted; read _",
            target.display()
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");

        let mut f = ProcFile::new(format!("/proc/{}/mountinfo", child.id()).into());
        let mut buf = String::new();
        assert!(f.read_mounts_if_changed(&mut buf).unwrap());
        let before = buf.clone();
        assert!(!before.contains("sonde-procfs-test"), "{before}");
        for _ in 0..2 {
            assert!(!f.read_mounts_if_changed(&mut buf).unwrap());
            assert_eq!(buf, before);
        }
        // A buffer that lost its content is filled again, changed or not.
        buf.clear();
        assert!(f.read_mounts_if_changed(&mut buf).unwrap());
        assert_eq!(buf, before);

        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "mounted\n");
        assert!(f.read_mounts_if_changed(&mut buf).unwrap());
        assert!(buf.contains("sonde-procfs-test"), "{buf}");
        assert!(!f.read_mounts_if_changed(&mut buf).unwrap());
        drop(stdin);
        child.wait().unwrap();

        // A file outside procfs never signals: it is read every time.
        let path = d.0.join("mountinfo");
        std::fs::write(&path, "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n").unwrap();
        let mut fixture = ProcFile::new(path.clone());
        assert!(fixture.read_mounts_if_changed(&mut buf).unwrap());
        std::fs::write(&path, "2 0 8:2 / / rw - xfs /dev/sdb1 rw\n").unwrap();
        assert!(fixture.read_mounts_if_changed(&mut buf).unwrap());
        assert!(buf.contains("xfs"), "{buf}");
    }
}
