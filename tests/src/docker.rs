//! A private Docker engine for the tests: `dockerd` on its own socket, data-root and exec-root
//! in a temp dir, with no bridge and no iptables rules, so it touches nothing of the host's and
//! its containers use the host's network (`--network host`) or another container's.
//! Images cannot be pulled here: tests build theirs `FROM scratch` (see [`Docker::busybox_image`]).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{TempDir, wait_until};

pub struct Docker {
    child: Child,
    dir: TempDir,
    host: String,
    extra: Vec<String>,
}

impl Docker {
    /// Starts a private engine and waits until it answers.
    pub fn start() -> Docker {
        Docker::start_with(&[])
    }

    /// Like [`Docker::start`], with more `dockerd` arguments (another `--host`, TLS files).
    pub fn start_with(extra: &[String]) -> Docker {
        // A short path: the engine's unix sockets must fit in 108 bytes.
        let dir = TempDir::new("dk");
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let extra = extra.to_vec();
        let child = spawn_dockerd(&dir, &host, &extra);
        let mut d = Docker {
            child,
            dir,
            host,
            extra,
        };
        d.wait_up();
        d
    }

    fn wait_up(&mut self) {
        let up = wait_until(Duration::from_secs(60), || {
            self.cmd(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success()
        });
        if !up {
            let _ = self.child.kill();
            panic!("dockerd did not come up; log:\n{}", self.log());
        }
    }

    /// Stops the engine (SIGTERM, then SIGKILL after 20 s); its state stays for [`Docker::restart`].
    pub fn stop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_until(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts the engine again on the same socket and data-root after [`Docker::stop`].
    pub fn restart(&mut self) {
        self.child = spawn_dockerd(&self.dir, &self.host, &self.extra);
        self.wait_up();
    }

    /// The value for `DOCKER_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Runs `docker ARGS` against this engine.
    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "0")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Runs `docker ARGS`, fails the test unless it succeeds; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Builds `tag` from a Dockerfile and a context directory.
    pub fn build(&self, tag: &str, dockerfile: &Path, context: &Path) {
        self.ok(&[
            "build",
            "-q",
            "-f",
            dockerfile.to_str().unwrap(),
            "-t",
            tag,
            context.to_str().unwrap(),
        ]);
    }

    /// An image `busybox` made `FROM scratch` from Debian's static busybox, for test containers.
    pub fn busybox_image(&self) {
        let ctx = TempDir::new("bbctx");
        let busybox = "/bin/busybox";
        assert!(
            Path::new(busybox).exists(),
            "{busybox} is missing: run tests/setup.sh (it installs busybox-static)"
        );
        std::fs::copy(busybox, ctx.join("busybox")).unwrap();
        let df = ctx.write(
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        );
        self.build("busybox", &df, ctx.path());
    }
}

fn spawn_dockerd(dir: &TempDir, host: &str, extra: &[String]) -> Child {
    let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dockerd is not installed: run tests/setup.sh (it installs docker.io)");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap();
    Command::new(dockerd)
        .arg("--host")
        .arg(host)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd")
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Remove the containers first so that the engine's mounts under the temp dir go away.
        let ids = self.cmd(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.cmd(&args);
        }
        // Networks a test made (bridges on the host) go with the engine.
        let _ = self.cmd(&["network", "prune", "-f"]);
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_until(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Mounts left behind (overlays under data/, the engine's network namespace under
        // exec/netns/) would make the temp dir impossible to remove.
        let prefix = format!("{}/", self.dir.path().display());
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            for line in mounts.lines() {
                if let Some(mnt) = line.split_whitespace().nth(1)
                    && mnt.starts_with(&prefix)
                {
                    let _ = Command::new("umount").arg("-l").arg(mnt).status();
                }
            }
        }
    }
}
