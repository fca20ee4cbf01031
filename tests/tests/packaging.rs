//! The three ways users install sonde, checked as an operator would: the .deb (lintian, install,
//! upgrade, remove, purge on this machine), the .rpm (contents and scripts), the systemd unit
//! (systemd-analyze, the notify protocol) and the container image (built and run on a private
//! Docker engine: default config, a mounted config, health, non-root, host /proc, and the
//! sidecar pattern delivering to VictoriaMetrics).
//!
//! `packaging/build.sh` makes the artefacts these tests read from target/package/;
//! tests/run-all.sh runs it before the tests.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sonde_tests::docker::Docker;
use sonde_tests::servers::{enc, free_port, get, victoria_metrics};
use sonde_tests::{SIGHUP, SIGTERM, TempDir, wait_until};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn version() -> String {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("workspace version")
        .to_string()
}

/// An artefact of packaging/build.sh.
fn artefact(name: &str) -> PathBuf {
    let p = root().join("target/package").join(name);
    assert!(
        p.exists(),
        "{} is missing: run packaging/build.sh first (tests/run-all.sh does)",
        p.display()
    );
    p
}

fn deb() -> PathBuf {
    artefact(&format!("sonde_{}_amd64.deb", version()))
}

fn rpm() -> PathBuf {
    artefact(&format!("sonde-{}-1.x86_64.rpm", version()))
}

/// Runs a command; returns (success, stdout + stderr).
fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let (success, text) = sh(cmd, args);
    assert!(success, "{cmd} {args:?} failed:\n{text}");
    text
}

#[test]
fn deb_passes_lintian_without_errors() {
    // lintian exits non-zero on an error tag (its default --fail-on error).
    let (clean, report) = sh(
        "lintian",
        &[
            "--tag-display-limit",
            "0",
            "--show-overrides",
            deb().to_str().unwrap(),
        ],
    );
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(clean && errors.is_empty(), "lintian errors:\n{report}");
    // The package was really examined: the one override (the static-PIE binary) shows up.
    assert!(
        report.contains("O: sonde: shared-library-lacks-prerequisites [usr/bin/sonde]"),
        "lintian did not examine the binary:\n{report}"
    );
}

#[test]
fn deb_holds_the_stated_files_with_their_modes() {
    let deb = deb();
    let listing = ok("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    let entry = |path: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
            .to_string()
    };
    assert!(entry("./usr/bin/sonde").starts_with("-rwxr-xr-x root/root"));
    assert!(entry("./etc/sonde/sonde.toml").starts_with("-rw-r--r-- root/root"));
    assert!(entry("./etc/sonde/sonde.d/").starts_with("drwxr-xr-x root/root"));
    assert!(entry("./etc/default/sonde").starts_with("-rw-r--r--"));
    assert!(entry("./lib/systemd/system/sonde.service").starts_with("-rw-r--r--"));
    entry("./usr/share/man/man1/sonde.1.gz");
    entry("./usr/share/doc/sonde/copyright");
    entry("./usr/share/doc/sonde/changelog.gz");

    let conffiles = ok("dpkg-deb", &["-I", deb.to_str().unwrap(), "conffiles"]);
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/default/sonde", "/etc/sonde/sonde.toml"]
    );
    // The packaged config is the embedded default, byte for byte.
    let extract = TempDir::new("debx");
    ok(
        "dpkg-deb",
        &[
            "-x",
            deb.to_str().unwrap(),
            extract.path().to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(extract.join("etc/sonde/sonde.toml")).unwrap(),
        std::fs::read(root().join("config/sonde.toml")).unwrap()
    );
    // The binary is static: it runs in a scratch image and on any distribution.
    let file = ok("file", &[extract.join("usr/bin/sonde").to_str().unwrap()]);
    assert!(
        file.contains("statically linked") || file.contains("static-pie"),
        "{file}"
    );
    let v = ok(
        extract.join("usr/bin/sonde").to_str().unwrap(),
        &["version"],
    );
    assert!(
        v.starts_with(&format!("sonde {} (commit ", version())),
        "{v}"
    );
    assert!(!v.contains("commit unknown"), "{v}");
}

/// Install, upgrade with an edited config, remove, purge: on this machine, as root.
#[test]
fn deb_installs_upgrades_removes_and_purges() {
    let deb = deb();
    // A leftover from an earlier run would change what install means.
    let _ = sh("dpkg", &["--purge", "sonde"]);

    ok("dpkg", &["-i", deb.to_str().unwrap()]);
    let v = ok("/usr/bin/sonde", &["version"]);
    assert!(v.contains(&version()), "{v}");
    let passwd = ok("getent", &["passwd", "sonde"]);
    assert!(passwd.contains(":/var/lib/sonde:"), "{passwd}");
    assert!(passwd.trim_end().ends_with("nologin"), "{passwd}");
    let uid: u32 = passwd.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "not a system user: {passwd}");
    let state = std::fs::metadata("/var/lib/sonde").unwrap();
    assert_eq!(state.uid(), uid);
    assert_eq!(state.mode() & 0o7777, 0o750);
    let conf = std::fs::metadata("/etc/sonde/sonde.toml").unwrap();
    assert_eq!((conf.uid(), conf.mode() & 0o7777), (0, 0o640));
    let gid: u32 = ok("getent", &["group", "sonde"])
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(conf.gid(), gid, "config readable by the sonde group");
    assert!(Path::new("/etc/sonde/sonde.d").is_dir());

    // The service's own command line is valid, and the sonde user can read its config.
    let check = ok(
        "runuser",
        &[
            "-u",
            "sonde",
            "--",
            "/usr/bin/sonde",
            "config",
            "check",
            "--config",
            "/etc/sonde/sonde.toml",
            "--config-directory",
            "/etc/sonde/sonde.d",
        ],
    );
    assert!(check.contains("configuration is valid"), "{check}");
    let (verified, report) = sh(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/sonde.service"],
    );
    assert!(verified, "systemd-analyze verify:\n{report}");
    let man = ok("man", &["-P", "cat", "sonde"]);
    assert!(man.contains("sonde.d"), "{man}");

    // Upgrade to a rebuilt package: an edited config is kept.
    let edited = format!(
        "{}\n[global_tags]\n  edited = \"by-admin\"\n",
        std::fs::read_to_string("/etc/sonde/sonde.toml").unwrap()
    );
    std::fs::write("/etc/sonde/sonde.toml", &edited).unwrap();
    let work = TempDir::new("debup");
    let tree = work.join("tree");
    ok(
        "dpkg-deb",
        &["-R", deb.to_str().unwrap(), tree.to_str().unwrap()],
    );
    let control = tree.join("DEBIAN/control");
    let newer = format!("{}+rebuild1", version());
    let text = std::fs::read_to_string(&control).unwrap().replace(
        &format!("Version: {}\n", version()),
        &format!("Version: {newer}\n"),
    );
    std::fs::write(&control, text).unwrap();
    let upgrade = work.join("sonde-upgrade.deb");
    ok(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-b",
            tree.to_str().unwrap(),
            upgrade.to_str().unwrap(),
        ],
    );
    ok("dpkg", &["-i", upgrade.to_str().unwrap()]);
    let status = ok("dpkg-query", &["-W", "-f", "${Version} ${Status}", "sonde"]);
    assert_eq!(status, format!("{newer} install ok installed"));
    assert_eq!(
        std::fs::read_to_string("/etc/sonde/sonde.toml").unwrap(),
        edited
    );
    let conf = std::fs::metadata("/etc/sonde/sonde.toml").unwrap();
    assert_eq!(conf.mode() & 0o777, 0o640, "mode kept across the upgrade");

    // Remove keeps the configuration.
    ok("dpkg", &["-r", "sonde"]);
    assert!(!Path::new("/usr/bin/sonde").exists());
    assert_eq!(
        std::fs::read_to_string("/etc/sonde/sonde.toml").unwrap(),
        edited
    );
    let status = ok("dpkg-query", &["-W", "-f", "${Status}", "sonde"]);
    assert_eq!(status, "deinstall ok config-files");

    // Purge removes the configuration and the state directory; the user stays.
    ok("dpkg", &["-P", "sonde"]);
    assert!(!Path::new("/etc/sonde").exists());
    assert!(!Path::new("/var/lib/sonde").exists());
    assert!(
        sh("getent", &["passwd", "sonde"]).0,
        "the system user stays"
    );
    assert!(!sh("dpkg-statoverride", &["--list", "/etc/sonde/sonde.toml"]).0);
}

#[test]
fn rpm_holds_the_stated_files_and_scripts() {
    let rpm = rpm();
    let p = rpm.to_str().unwrap();
    let files = ok("rpm", &["-qpl", p]);
    for f in [
        "/usr/bin/sonde",
        "/etc/sonde/sonde.toml",
        "/etc/sonde/sonde.d",
        "/etc/sysconfig/sonde",
        "/usr/lib/systemd/system/sonde.service",
        "/var/lib/sonde",
        "/usr/share/man/man1/sonde.1.gz",
        "/usr/share/doc/sonde/LICENSE-MIT",
        "/usr/share/doc/sonde/LICENSE-APACHE",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the rpm:\n{files}"
        );
    }
    let config = ok("rpm", &["-qpc", p]);
    assert_eq!(
        config.lines().collect::<Vec<_>>(),
        ["/etc/sonde/sonde.toml", "/etc/sysconfig/sonde"]
    );
    let modes = ok("rpm", &["-qplv", p]);
    let line = |f: &str| {
        modes
            .lines()
            .find(|l| l.ends_with(&format!(" {f}")))
            .unwrap_or_else(|| panic!("{f}:\n{modes}"))
            .to_string()
    };
    assert!(line("/usr/bin/sonde").starts_with("-rwxr-xr-x"), "{modes}");
    let conf = line("/etc/sonde/sonde.toml");
    assert!(
        conf.starts_with("-rw-r-----") && conf.contains("root") && conf.contains("sonde"),
        "{conf}"
    );
    let state = line("/var/lib/sonde");
    assert!(
        state.starts_with("drwxr-x---") && state.contains("sonde"),
        "{state}"
    );

    let scripts = ok("rpm", &["-qp", "--scripts", p]);
    assert!(scripts.contains("preinstall scriptlet"), "{scripts}");
    assert!(scripts.contains("useradd -r -g sonde"), "{scripts}");
    assert!(scripts.contains("disable --now sonde.service"), "{scripts}");
    assert!(scripts.contains("try-restart sonde.service"), "{scripts}");
    let meta = ok("rpm", &["-qp", "--qf", "%{NAME} %{VERSION} %{LICENSE}", p]);
    assert_eq!(meta, format!("sonde {} MIT OR Apache-2.0", version()));
}

#[test]
fn unit_is_notify_reloads_and_is_hardened() {
    let unit = std::fs::read_to_string(root().join("packaging/sonde.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .collect()
    };
    let one = |key: &str| values(key).pop().unwrap_or_else(|| panic!("{key} missing"));
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("User"), "sonde");
    // Longer than sonde's default shutdown_timeout (10s): the final flush is never cut off.
    let stop: u64 = one("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(stop > 10, "TimeoutStopSec={stop}");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert!(!one("ProtectHome").is_empty());
    assert_eq!(one("ReadWritePaths"), "/var/lib/sonde");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert!(one("ExecStart").contains("--config-directory /etc/sonde/sonde.d"));
}

/// The notify protocol the unit relies on, with sonde as systemd would run it.
#[test]
fn sonde_tells_systemd_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = free_port();
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  interval = \"1s\"\n[[inputs.mem]]\n\
             [[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{port}\"\n"
        ),
    );
    let log = std::fs::File::create(dir.join("sonde.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(sonde_tests::sonde_bin())
            .args(["--config", cfg.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &sock_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let recv = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification within 20s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(), "READY=1");
    // READY means serving: the endpoint answers now.
    let (status, _) = get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    assert_eq!(status, 200);
    unsafe { libc::kill(child.0.id() as i32, SIGHUP) };
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(recv(), "READY=1");
    unsafe { libc::kill(child.0.id() as i32, SIGTERM) };
    assert_eq!(recv(), "STOPPING=1");
    let status = child.0.wait().unwrap();
    assert!(status.success());
}

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The image, on a private engine, built from the context packaging/build.sh staged.
fn image(docker: &Docker) -> &'static str {
    let ctx = artefact("image");
    docker.build("sonde-test", &root().join("packaging/Dockerfile"), &ctx);
    "sonde-test"
}

fn metrics_at(port: u16) -> Option<String> {
    match get(&format!("http://127.0.0.1:{port}/metrics")) {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

#[test]
fn image_runs_as_non_root_serves_metrics_and_turns_healthy() {
    let docker = Docker::start();
    let img = image(&docker);
    let size: u64 = docker
        .ok(&["image", "inspect", "-f", "{{.Size}}", img])
        .parse()
        .unwrap();
    eprintln!("image size: {:.1} MB", size as f64 / 1e6);
    // The issue's target, in docker's units: a size regression fails here, not in a figure.
    assert!(
        size <= 15_000_000,
        "the image must stay within 15 MB: {size} bytes"
    );
    assert_eq!(
        docker.ok(&["image", "inspect", "-f", "{{.Config.User}}", img]),
        "65532:65532"
    );

    // The embedded default config, its endpoint moved off 9273 so as not to meet a real agent.
    let port = free_port();
    let id = docker.ok(&[
        "run",
        "-d",
        "--network",
        "host",
        "--health-interval",
        "1s",
        "-e",
        &format!("SONDE_LISTEN=127.0.0.1:{port}"),
        img,
    ]);
    let mut body = None;
    wait_until(Duration::from_secs(30), || {
        body = metrics_at(port).filter(|b| b.contains("mem_total"));
        body.is_some()
    });
    assert!(
        body.is_some(),
        "no metrics; logs:\n{}",
        docker.ok(&["logs", &id])
    );
    let healthy = wait_until(Duration::from_secs(30), || {
        docker.ok(&["inspect", "-f", "{{.State.Health.Status}}", &id]) == "healthy"
    });
    assert!(
        healthy,
        "{}",
        docker.ok(&["inspect", "-f", "{{json .State.Health}}", &id])
    );
    // Really not root: the process's uid as the host kernel sees it.
    let pid = docker.ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid}"
    );

    // A mounted config replaces the default; with the host's /proc mounted and HOST_PROC set,
    // the host inputs see the host's processes, not the container's one.
    let dir = TempDir::new("imgcfg");
    let run_with = |extra: &[&str]| -> f64 {
        let port = free_port();
        let cfg = dir.write(
            &format!("sonde-{port}.toml"),
            &format!(
                "[global_tags]\n  config = \"mounted\"\n[agent]\n  interval = \"1s\"\n\
                 [[inputs.processes]]\n\
                 [[outputs.prometheus_client]]\n  listen = \"127.0.0.1:{port}\"\n"
            ),
        );
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let mount = format!("{}:/etc/sonde/sonde.toml:ro", cfg.display());
        let mut args = vec!["run", "-d", "--network", "host", "-v", &mount];
        args.extend_from_slice(extra);
        args.push(img);
        let id = docker.ok(&args);
        let mut total = None;
        wait_until(Duration::from_secs(30), || {
            total = metrics_at(port).and_then(|b| {
                b.lines()
                    .find(|l| l.starts_with("processes_total{") && l.contains("config=\"mounted\""))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            });
            total.is_some()
        });
        docker.ok(&["rm", "-f", &id]);
        total.unwrap_or_else(|| panic!("no processes_total from the mounted config"))
    };
    let inside = run_with(&[]);
    let host = run_with(&["-v", "/proc:/host/proc:ro", "-e", "HOST_PROC=/host/proc"]);
    assert!(
        inside <= 2.0,
        "the container alone runs sonde only: {inside}"
    );
    assert!(
        host > inside + 5.0,
        "host /proc shows the host's processes: {host} vs {inside}"
    );
}

/// The sidecar pattern: sonde in the application container's network namespace scrapes the
/// application's /metrics on localhost and delivers to a central VictoriaMetrics.
#[test]
fn image_as_sidecar_scrapes_the_app_and_delivers_to_victoria_metrics() {
    let vm = victoria_metrics();
    let docker = Docker::start();
    docker.busybox_image();
    let img = image(&docker);

    let dir = TempDir::new("sidecar");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("metrics"),
        "# TYPE app_requests_total counter\napp_requests_total{route=\"/api\"} 4242\n",
    )
    .unwrap();
    let app_port = free_port();
    let www_mount = format!("{}:/www:ro", www.display());
    let app = docker.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "host",
        "-v",
        &www_mount,
        "busybox",
        "httpd",
        "-f",
        "-p",
        &format!("127.0.0.1:{app_port}"),
        "-h",
        "/www",
    ]);
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\n  interval = \"1s\"\n  flush_interval = \"1s\"\n  omit_hostname = true\n\
             [[inputs.prometheus]]\n  metric_version = 2\n  urls = [\"http://localhost:{app_port}/metrics\"]\n\
             [[outputs.prometheus_remote_write]]\n  url = \"{}\"\n",
            vm.url("/api/v1/write")
        ),
    );
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mount = format!("{}:/etc/sonde/sonde.toml:ro", cfg.display());
    let sidecar = docker.ok(&[
        "run",
        "-d",
        "--network",
        &format!("container:{app}"),
        "-v",
        &mount,
        img,
    ]);
    let url = vm.url(&format!(
        "/api/v1/query?query={}",
        enc("app_requests_total{route=\"/api\"}")
    ));
    let mut value = None;
    wait_until(Duration::from_secs(60), || {
        value = get(&url).ok().and_then(|(_, body)| {
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()
        });
        value.is_some()
    });
    assert_eq!(
        value,
        Some(4242.0),
        "sidecar logs:\n{}",
        docker.ok(&["logs", &sidecar])
    );
    // The sidecar really shares the app's network namespace.
    let ns = |id: &str| {
        let pid = docker.ok(&["inspect", "-f", "{{.State.Pid}}", id]);
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
    };
    assert_eq!(ns(&app), ns(&sidecar));
}
