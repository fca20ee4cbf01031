//! Helpers for the end-to-end tests: run the built `sonde` binary with a config, and a local
//! HTTP server whose answers a test scripts.

pub mod cloudwatch;
pub mod crypto;
pub mod docker;
pub mod http;
pub mod http_client;
pub mod pgapache;
pub mod pki;
pub mod probes;
pub mod servers;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `sonde` binary of this build: `$SONDE_BIN`, else next to the test executable's folder.
pub fn sonde_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SONDE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/sonde
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sonde"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --workspace), or set SONDE_BIN",
        bin.display()
    );
    bin
}

/// A request's header lines as (name, value) pairs.
pub type Headers = Vec<(String, String)>;

/// Reads an HTTP/1.1 request's header lines (after its request line) and its
/// `Content-Length` body: what the tests' recording servers keep of a request.
pub fn read_headers_and_body(r: &mut impl std::io::BufRead) -> Option<(Headers, Vec<u8>)> {
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((headers, body))
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "sonde-test-{name}-{}-{}",
            std::process::id(),
            fastrand_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    /// Writes a file; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
    /// Writes an executable script; returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(name, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Output of a finished run.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs sonde to completion with the given arguments (`--test`, `--once`, `config check`).
pub fn run(args: &[&str]) -> Finished {
    let out = Command::new(sonde_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sonde");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A sonde process running in the background; killed when dropped.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Starts `sonde --debug --config <config>`; the log goes to `<dir>/sonde.log`.
    pub fn start(dir: &TempDir, config: &Path) -> Agent {
        let log = dir.join("sonde.log");
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(sonde_bin())
            .arg("--debug")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start sonde");
        Agent { child, log }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) {
        let ok = wait_until(timeout, || self.log().matches(needle).count() >= count);
        assert!(
            ok,
            "sonde did not log {needle:?} {count} times in {timeout:?}; log:\n{}",
            self.log()
        );
    }

    /// Waits until some log line contains every one of `parts`.
    pub fn wait_log_line(&self, parts: &[&str], timeout: Duration) {
        let ok = wait_until(timeout, || {
            self.log()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
        });
        assert!(
            ok,
            "sonde logged no line with {parts:?} in {timeout:?}; log:\n{}",
            self.log()
        );
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc_kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sonde did not exit within {timeout:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SIGHUP: i32 = 1;
pub const SIGTERM: i32 = 15;
pub const SIGUSR1: i32 = 10;

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Polls `cond` every 20ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sorted non-empty lines, for comparing line-protocol output regardless of order.
pub fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// Splits a line-protocol line at `sep` outside quotes and backslash escapes (escapes kept).
pub fn split_lp(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut esc) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        if esc {
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            cur.push(c);
            esc = true;
        } else if c == '"' {
            cur.push(c);
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}
