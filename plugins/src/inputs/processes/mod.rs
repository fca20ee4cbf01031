//! `inputs.processes`: processes by state and the total thread count, from /proc/<pid>/stat,
//! as Telegraf's processes plugin on Linux.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{SharedFile, is_on_procfs};
use crate::inputs::host::{HostPaths, metric, push};
use crate::model::ValueType;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Telegraf's option to run `ps` through sudo on BSDs; Linux reads /proc, so it is ignored.
    #[serde(default)]
    pub use_sudo: bool,
}

#[derive(Default)]
struct Counts {
    running: i64,
    sleeping: i64,
    blocked: i64,
    zombies: i64,
    stopped: i64,
    dead: i64,
    paging: i64,
    idle: i64,
    parked: i64,
    unknown: i64,
    total: i64,
    threads: i64,
    /// The first error on a single process (one per gather, not one per process).
    first_err: Option<String>,
}

impl Counts {
    fn error(&mut self, f: impl FnOnce() -> String) {
        self.first_err.get_or_insert_with(f);
    }
}

struct Processes {
    proc: PathBuf,
    /// The /proc directory, kept open across gathers: each gather rewinds it and lists it with
    /// getdents64, and opens `<pid>/stat` relative to it (no path building, no allocation).
    dir: Option<OwnedFd>,
    dents: Vec<u8>,
    buf: Vec<u8>,
    /// `<pid>/stat` files kept open across gathers and read again at offset 0: a process that
    /// lives on costs one pread per gather instead of openat + read + close (the path lookup
    /// was the largest part of this input's cost). Value: the fd and the gather it was seen in.
    kept: HashMap<u32, (OwnedFd, u64)>,
    max_kept: usize,
    generation: u64,
    /// /proc/stat, for its `processes` line: the number of tasks created since boot, in every
    /// namespace (shared with the cpu, kernel and system inputs' read of the same tick).
    stat: SharedFile,
    /// That number, read before the last listing of the directory, when that listing kept
    /// every process's stat file open. While it stays the same no task has been created since,
    /// so the kept files are all the processes there are: the gather reads them without
    /// listing the directory again (getdents64 on /proc makes the kernel look up every pid).
    listed_at_forks: Option<u64>,
    /// The directory is procfs (a fixture tree's stat never changes: it is always listed).
    on_procfs: bool,
    /// Each process's main-thread stat is read (see [`stat_rel_path`]): procfs that has them.
    main_thread_stat: bool,
    /// Gathers since the directory was last listed.
    unlisted: u32,
}

/// The most gathers in a row that read only the kept files.
const RELIST_EVERY: u32 = 15;

/// Enough for the first 20 fields of any stat line (a 64-byte comm and 19 numbers).
const STAT_BUF: usize = 1024;

impl Processes {
    fn new(paths: &HostPaths) -> Self {
        Processes {
            proc: paths.proc.clone(),
            dir: None,
            dents: vec![0; 32 * 1024],
            buf: vec![0; STAT_BUF],
            kept: HashMap::new(),
            max_kept: max_kept(),
            generation: 0,
            stat: SharedFile::new(paths.proc("stat")),
            listed_at_forks: None,
            on_procfs: false,
            main_thread_stat: false,
            unlisted: 0,
        }
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        // Read before the listing: a task created before this read is already in /proc. (An
        // error opening the directory is reported by the listing.)
        let forks = if self.dir_fd().is_ok() && self.on_procfs {
            self.stat.with(acc.time(), forks).ok().flatten()
        } else {
            None
        };
        self.gather_after(acc, forks);
    }

    /// Gathers, `forks` being the fork count read before (`None`: unknown, list).
    fn gather_after(&mut self, acc: &mut Accumulator, forks: Option<u64>) {
        let mut c = Counts::default();
        // Listed again at least every `RELIST_EVERY` gathers all the same: a process can also
        // become visible without a fork (procfs `hidepid` and a change of user).
        let result =
            if forks.is_some() && forks == self.listed_at_forks && self.unlisted < RELIST_EVERY {
                self.unlisted += 1;
                self.recount(&mut c);
                Ok(())
            } else {
                self.listed_at_forks = None;
                self.unlisted = 0;
                self.scan(&mut c).map(|complete| {
                    if complete {
                        self.listed_at_forks = forks;
                    }
                })
            };
        if let Err(e) = result {
            // Reopen next time, in case the directory itself went away.
            self.dir = None;
            acc.add_error(format!("reading {}: {e}", self.proc.display()));
            return;
        }
        if let Some(e) = c.first_err.take() {
            acc.add_error(e);
        }
        let mut m = metric(acc, "processes", ValueType::Gauge, 12);
        push(&mut m, "blocked", c.blocked);
        push(&mut m, "zombies", c.zombies);
        push(&mut m, "stopped", c.stopped);
        push(&mut m, "running", c.running);
        push(&mut m, "sleeping", c.sleeping);
        push(&mut m, "total", c.total);
        push(&mut m, "unknown", c.unknown);
        push(&mut m, "dead", c.dead);
        push(&mut m, "paging", c.paging);
        push(&mut m, "total_threads", c.threads);
        push(&mut m, "idle", c.idle);
        // Telegraf only has this field once a parked task was seen.
        if c.parked > 0 {
            push(&mut m, "parked", c.parked);
        }
        acc.add(m);
    }
}

impl Processes {
    fn dir_fd(&mut self) -> io::Result<RawFd> {
        if let Some(fd) = &self.dir {
            return Ok(fd.as_raw_fd());
        }
        let path = CString::new(self.proc.as_os_str().as_encoded_bytes())?;
        // SAFETY: path is NUL-terminated; the fd is owned below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        self.on_procfs = is_on_procfs(&fd);
        // pid 1 is in every pid namespace; a procfs without task directories (or one that
        // hides pid 1) gets the whole-process files rather than nothing.
        // SAFETY: fd is open and the path NUL-terminated.
        self.main_thread_stat = self.on_procfs
            && unsafe { libc::faccessat(fd.as_raw_fd(), c"1/task/1/stat".as_ptr(), libc::R_OK, 0) }
                == 0;
        Ok(self.dir.insert(fd).as_raw_fd())
    }

    /// Counts the processes whose stat files are kept, dropping those that are gone (no task
    /// was created since they were listed, so no pid has been reused).
    fn recount(&mut self, c: &mut Counts) {
        let (buf, proc, main) = (&mut self.buf, &self.proc, self.main_thread_stat);
        let path = |pid: &u32| stat_path(proc, pid.to_string().as_bytes(), main);
        self.kept
            .retain(|pid, (fd, _)| match pread0(fd.as_raw_fd(), buf) {
                Ok(len) => {
                    if !count(&buf[..len], c) {
                        c.error(|| format!("{}: unexpected content", path(pid)));
                    }
                    true
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => false,
                Err(e) => {
                    c.error(|| format!("reading {}: {e}", path(pid)));
                    true
                }
            });
    }

    /// Lists the directory and counts every numeric entry's stat; errors on single processes
    /// go to `c.first_err`, an error listing the directory is returned. Returns whether every
    /// process listed and still there has its stat file kept.
    fn scan(&mut self, c: &mut Counts) -> io::Result<bool> {
        let dir = self.dir_fd()?;
        self.generation += 1;
        let mut complete = true;
        // SAFETY: dir is an open descriptor.
        if unsafe { libc::lseek(dir, 0, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: dents is valid for its length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir,
                    self.dents.as_mut_ptr(),
                    self.dents.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                // Close the files of processes that are gone.
                let g = self.generation;
                self.kept.retain(|_, (_, seen)| *seen == g);
                return Ok(complete);
            }
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, NUL-terminated name.
            let (mut off, n) = (0, n as usize);
            while off + 19 < n {
                let reclen = u16::from_ne_bytes([self.dents[off + 16], self.dents[off + 17]]);
                let end = off + reclen as usize;
                if end <= off + 19 || end > n {
                    return Err(io::Error::other("malformed getdents64 record"));
                }
                let rec = &self.dents[off + 19..end];
                off = end;
                let name = &rec[..memchr::memchr(0, rec).unwrap_or(rec.len())];
                if name.is_empty() || name.len() > 20 || !name.iter().all(u8::is_ascii_digit) {
                    continue;
                }
                let Some(pid) = parse_u64(name).and_then(|p| u32::try_from(p).ok()) else {
                    continue;
                };
                let path = stat_rel_path(name, self.main_thread_stat);
                let kept = Kept {
                    files: &mut self.kept,
                    max: self.max_kept,
                    generation: self.generation,
                };
                match kept.read(dir, pid, &path, &mut self.buf) {
                    Ok(len) => {
                        complete &= self.kept.contains_key(&pid);
                        if !count(&self.buf[..len], c) {
                            c.error(|| format!("{}: unexpected content", self.stat_path(name)));
                        }
                    }
                    // The process exited between listing and reading.
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => {
                        complete = false;
                        c.error(|| format!("reading {}: {e}", self.stat_path(name)));
                    }
                }
            }
        }
    }

    fn stat_path(&self, pid: &[u8]) -> String {
        stat_path(&self.proc, pid, self.main_thread_stat)
    }
}

/// The stat file of `pid`, for messages.
fn stat_path(proc: &Path, pid: &[u8], main_thread: bool) -> String {
    let rel = stat_rel_path(pid, main_thread);
    let rel = &rel[..memchr::memchr(0, &rel).unwrap_or(rel.len())];
    format!("{}/{}", proc.display(), String::from_utf8_lossy(rel))
}

/// The stat file of `pid` (at most 20 digits), NUL-terminated, relative to the /proc
/// directory. With `main_thread` (procfs) it is the main thread's, `<pid>/task/<pid>/stat`:
/// the same state and num_threads as `<pid>/stat`, which the kernel writes by also adding up
/// the CPU times and fault counts of every thread of the process. That is 8% of this input's
/// CPU on a host of 66 processes, and more where processes have many threads.
fn stat_rel_path(pid: &[u8], main_thread: bool) -> [u8; 64] {
    let mut path = [0u8; 64];
    let mut at = 0;
    let mut put = |s: &[u8]| {
        path[at..at + s.len()].copy_from_slice(s);
        at += s.len();
    };
    put(pid);
    if main_thread {
        put(b"/task/");
        put(pid);
    }
    put(b"/stat");
    path
}

struct Kept<'a> {
    files: &'a mut HashMap<u32, (OwnedFd, u64)>,
    max: usize,
    generation: u64,
}

impl Kept<'_> {
    /// Reads the start of `pid`'s stat into `buf`, from its kept file or by opening
    /// `path` (NUL-terminated, relative to `dir`) and keeping it while there is room.
    fn read(self, dir: RawFd, pid: u32, path: &[u8], buf: &mut [u8]) -> io::Result<usize> {
        if let Some((fd, seen)) = self.files.get_mut(&pid) {
            *seen = self.generation;
            match pread0(fd.as_raw_fd(), buf) {
                // The process we opened exited (its pid may now be another's): reopen.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    self.files.remove(&pid);
                }
                r => return r,
            }
        }
        // SAFETY: path is NUL-terminated (the caller's zeroed array); the fd is owned below.
        let fd =
            unsafe { libc::openat(dir, path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, closed on drop.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let r = pread0(fd.as_raw_fd(), buf);
        if r.is_ok() && self.files.len() < self.max {
            self.files.insert(pid, (fd, self.generation));
        }
        r
    }
}

/// How many stat files to keep open: a quarter of the soft fd limit, so the rest of the
/// agent keeps room for its connections (the files beyond are opened per gather).
fn max_kept() -> usize {
    // SAFETY: getrlimit writes into the struct we pass.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    (lim.rlim_cur / 4).min(8192) as usize
}

/// Reads once from offset 0 into `buf`: a stat file is produced whole by its first read, and
/// reading a kept one again at offset 0 produces it afresh (only its start is needed).
fn pread0(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The `processes` line of /proc/stat: tasks created since boot (`None` for 0: a procfs that
/// does not count them, as gVisor's).
fn forks(stat: &str) -> Option<u64> {
    let at = stat.find("\nprocesses ")? + "\nprocesses ".len();
    let rest = &stat.as_bytes()[at..];
    parse_u64(&rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())]).filter(|&n| n > 0)
}

/// Counts one /proc/<pid>/stat. The command name may hold spaces and parentheses, so the
/// fields start after the last ')'. Returns false when the content is not a stat line.
fn count(stat: &[u8], c: &mut Counts) -> bool {
    let Some(i) = memchr::memrchr(b')', stat) else {
        return false;
    };
    let mut it = stat[i + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let Some(&state) = it.next().and_then(|s| s.first()) else {
        return false;
    };
    match state {
        b'R' => c.running += 1,
        b'S' => c.sleeping += 1,
        b'D' => c.blocked += 1,
        b'Z' => c.zombies += 1,
        b'X' | b'x' => c.dead += 1,
        b'T' | b't' => c.stopped += 1,
        b'W' => c.paging += 1,
        b'I' => c.idle += 1,
        b'P' => c.parked += 1,
        _ => c.unknown += 1,
    }
    c.total += 1;
    // num_threads is field 20 of the line, the 17th after the state.
    if let Some(n) = it.nth(16).and_then(parse_u64) {
        c.threads += n as i64;
    }
    true
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[async_trait]
impl Input for Processes {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let _cfg: Config = parse_config(table)?;
    Ok(InputPlugin::Polled(Box::new(Processes::new(
        &HostPaths::from_env(),
    ))))
}

pub const SPEC: InputSpec = InputSpec {
    name: "processes",
    description: "Number of processes by state and total threads (Telegraf's processes)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(paths: &HostPaths) -> Accumulator {
        let mut p = Processes::new(paths);
        let mut acc = Accumulator::new(1);
        p.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn counts_states_and_threads_from_fixture() {
        let acc = gather(&fixture("modern"));
        // pid 5 has a garbage stat: counted as an error, the rest still reported.
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        let m = &acc.metrics[0];
        let i = |k: &str| m.field(k).cloned();
        assert_eq!(i("total"), Some(FieldValue::Int(4)));
        assert_eq!(i("running"), Some(FieldValue::Int(1)));
        assert_eq!(i("sleeping"), Some(FieldValue::Int(1)));
        assert_eq!(i("zombies"), Some(FieldValue::Int(1)));
        assert_eq!(i("idle"), Some(FieldValue::Int(1)));
        assert_eq!(i("blocked"), Some(FieldValue::Int(0)));
        assert_eq!(i("total_threads"), Some(FieldValue::Int(1 + 12 + 1 + 1)));
        assert!(m.field("parked").is_none());
    }

    #[test]
    fn comm_with_parens_and_spaces() {
        let mut c = Counts::default();
        let line = b"42 (a) b) (c d) D 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 7 0 1\n";
        assert!(count(line, &mut c));
        assert_eq!((c.blocked, c.threads), (1, 7));
        assert!(!count(b"garbage", &mut c));
    }

    #[test]
    fn real_proc_counts_this_process() {
        let acc = gather(&HostPaths::default());
        let m = &acc.metrics[0];
        let Some(FieldValue::Int(total)) = m.field("total") else {
            panic!()
        };
        let Some(FieldValue::Int(threads)) = m.field("total_threads") else {
            panic!()
        };
        // Our own process is counted (its main thread may be sleeping while a test thread
        // runs, so "running" can be 0), and every process has exactly one state.
        let states: i64 = m
            .fields
            .iter()
            .filter(|(k, _)| k != "total" && k != "total_threads")
            .map(|(_, v)| match v {
                FieldValue::Int(n) => *n,
                _ => 0,
            })
            .sum();
        assert!(*total >= 1, "{m}");
        assert_eq!(states, *total, "{m}");
        assert!(threads >= total);
    }

    #[test]
    fn kept_stat_file_follows_the_process_and_goes_with_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut p = Processes::new(&HostPaths::default());
        let dir = p.dir_fd().unwrap();
        assert!(p.main_thread_stat);
        let path = stat_rel_path(pid.to_string().as_bytes(), true);
        let state = |p: &mut Processes| {
            let kept = Kept {
                files: &mut p.kept,
                max: 10,
                generation: 1,
            };
            let n = kept.read(dir, pid, &path, &mut p.buf)?;
            let mut c = Counts::default();
            assert!(count(&p.buf[..n], &mut c));
            Ok::<_, io::Error>((c.sleeping, c.stopped))
        };
        // The child runs until it has exec'd and sleeps; then it stops. The kept file shows
        // each state: it is read afresh, not cached.
        let wait_for = |p: &mut Processes, want| {
            for _ in 0..200 {
                if state(p).unwrap() == want {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("never saw {want:?}");
        };
        wait_for(&mut p, (1, 0));
        assert!(p.kept.contains_key(&pid));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        wait_for(&mut p, (0, 1));
        assert_eq!(p.kept.len(), 1);
        child.kill().unwrap();
        child.wait().unwrap();
        // Reaped: the kept file is dropped and the reopen finds no such process.
        let e = state(&mut p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(!p.kept.contains_key(&pid));
    }

    #[test]
    fn main_thread_stat_has_the_processes_state_and_thread_count() {
        // This test process has several threads (the harness's, and one parked here), so the
        // two files differ in their CPU times but must agree on what is counted.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || rx.recv());
        let pid = std::process::id().to_string();
        let read = |rel: &str| {
            let stat = std::fs::read(format!("/proc/{rel}")).unwrap();
            let mut c = Counts::default();
            assert!(count(&stat, &mut c));
            (c.total, c.running + c.sleeping, c.threads)
        };
        let task = stat_rel_path(pid.as_bytes(), true);
        let task = std::str::from_utf8(&task[..memchr::memchr(0, &task).unwrap()]).unwrap();
        assert_eq!(task, format!("{pid}/task/{pid}/stat"));
        // Other tests start and end threads meanwhile: compare a read of the main thread's
        // file with two reads of the whole process's that agree.
        let whole = format!("{pid}/stat");
        let agreed = (0..100).find_map(|_| {
            let (before, main, after) = (read(&whole), read(task), read(&whole));
            (before == after).then_some((before, main))
        });
        let (whole, main) = agreed.expect("the thread count never held still");
        assert_eq!(whole, main);
        assert!(main.2 >= 2, "{main:?}");
        tx.send(()).unwrap();
        parked.join().unwrap().unwrap();
    }

    /// Gathers with the fork count `forks`; returns the total reported and whether the
    /// directory was listed.
    fn gather_at(p: &mut Processes, forks: u64) -> (i64, bool) {
        let generation = p.generation;
        let mut acc = Accumulator::new(1);
        p.gather_after(&mut acc, Some(forks));
        let total = match acc.metrics[0].field("total") {
            Some(FieldValue::Int(n)) => *n,
            other => panic!("total: {other:?}"),
        };
        (total, p.generation != generation)
    }

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    #[test]
    fn unchanged_fork_count_reads_the_kept_files_without_listing() {
        let mut p = Processes::new(&HostPaths::default());
        let mut child = sleeper();
        let pid = child.id();
        assert!(gather_at(&mut p, 7).1, "the first gather lists");
        assert!(p.kept.contains_key(&pid), "more processes than kept files?");
        let (total, listed) = gather_at(&mut p, 7);
        assert!(!listed, "listed again with the same fork count");
        assert_eq!(total, p.kept.len() as i64);
        // A process that is gone (reaped) is dropped from the kept files, not counted.
        child.kill().unwrap();
        child.wait().unwrap();
        let (total, listed) = gather_at(&mut p, 7);
        assert!(!listed);
        assert!(!p.kept.contains_key(&pid));
        assert_eq!(total, p.kept.len() as i64);
    }

    #[test]
    fn a_new_fork_count_lists_and_finds_the_new_process() {
        let mut p = Processes::new(&HostPaths::default());
        gather_at(&mut p, 7);
        let mut child = sleeper();
        let (_, listed) = gather_at(&mut p, 8);
        let seen = p.kept.contains_key(&child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(listed, "not listed after a fork");
        assert!(seen, "the new process was not seen");
    }

    #[test]
    fn the_directory_is_listed_again_after_a_run_of_unlisted_gathers() {
        let mut p = Processes::new(&HostPaths::default());
        assert!(gather_at(&mut p, 7).1);
        for _ in 0..RELIST_EVERY {
            assert!(!gather_at(&mut p, 7).1);
        }
        assert!(gather_at(&mut p, 7).1);
        assert!(!gather_at(&mut p, 7).1);
    }

    #[test]
    fn real_gathers_read_the_fork_count_on_procfs_only() {
        let mut p = Processes::new(&HostPaths::default());
        p.gather_sync(&mut Accumulator::new(1));
        assert!(p.on_procfs);
        // This machine's kernel counts forks: a complete listing records the count.
        assert!(p.listed_at_forks.is_some_and(|n| n > 0));
        let mut f = Processes::new(&fixture("modern"));
        f.gather_sync(&mut Accumulator::new(1));
        assert!(!f.on_procfs && !f.main_thread_stat);
        assert_eq!(f.listed_at_forks, None);
    }

    #[test]
    fn fork_count_from_proc_stat() {
        let text = "cpu  1 2 3\nctxt 99\nbtime 1700000000\nprocesses 123456\nprocs_running 2\n";
        assert_eq!(forks(text), Some(123456));
        assert_eq!(forks("cpu 1\nprocesses x\n"), None);
        assert_eq!(forks("cpu 1\nprocesses 0\n"), None);
        assert_eq!(forks("cpu 1\n"), None);
    }
}
