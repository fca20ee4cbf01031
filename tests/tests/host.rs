//! End-to-end: the host inputs through the real binary, checked against the kernel's own files
//! read in the same test, and against the committed fixture trees of other kernels through the
//! `HOST_*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sonde_tests::{Agent, TempDir, run, sonde_bin, wait_until};

/// One line-protocol line, values kept as written (`12i`, `3u`, `0.5`, `"text"`).
#[derive(Debug)]
struct Line {
    name: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
}

impl Line {
    fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    /// A numeric field without its type suffix, as f64.
    fn num(&self, k: &str) -> f64 {
        let v = self
            .fields
            .get(k)
            .unwrap_or_else(|| panic!("no field {k} in {self:?}"));
        v.trim_end_matches(['i', 'u'])
            .parse()
            .unwrap_or_else(|e| panic!("field {k}={v}: {e}"))
    }
    /// An integer field (`i` or `u` suffix), exactly.
    fn int(&self, k: &str) -> u64 {
        let v = self
            .fields
            .get(k)
            .unwrap_or_else(|| panic!("no field {k} in {self:?}"));
        assert!(v.ends_with(['i', 'u']), "{k}={v} is not an integer");
        v[..v.len() - 1]
            .parse()
            .unwrap_or_else(|e| panic!("field {k}={v}: {e}"))
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\ ", " ")
        .replace("\\,", ",")
        .replace("\\=", "=")
}

fn parse_line(l: &str) -> Line {
    let parts = sonde_tests::split_lp(l, ' ');
    assert!(parts.len() >= 2, "bad line {l:?}");
    let mut head = sonde_tests::split_lp(&parts[0], ',').into_iter();
    let name = unescape(&head.next().unwrap());
    let kv = |s: String| {
        let (k, v) = s
            .split_once('=')
            .unwrap_or_else(|| panic!("bad pair in {l:?}"));
        (unescape(k), v.to_string())
    };
    let tags = head.map(kv).collect();
    let fields = sonde_tests::split_lp(&parts[1], ',')
        .into_iter()
        .map(kv)
        .collect();
    Line { name, tags, fields }
}

fn parse(out: &str) -> Vec<Line> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

/// The lines of measurement `name` whose tags include every `(key, value)` of `tags`.
fn find<'a>(lines: &'a [Line], name: &str, tags: &[(&str, &str)]) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| l.name == name && tags.iter().all(|(k, v)| l.tag(k) == Some(*v)))
        .collect()
}

/// The single line with that name and those tags that has field `field`.
fn one<'a>(lines: &'a [Line], name: &str, tags: &[(&str, &str)], field: &str) -> &'a Line {
    let found: Vec<_> = find(lines, name, tags)
        .into_iter()
        .filter(|l| l.fields.contains_key(field))
        .collect();
    assert_eq!(found.len(), 1, "{name} {tags:?} with {field}: {found:?}");
    found[0]
}

fn config(dir: &TempDir, inputs: &str) -> PathBuf {
    dir.write(
        "sonde.toml",
        &format!("[agent]\n  omit_hostname = true\n  interval = \"1h\"\n\n{inputs}\n"),
    )
}

/// `sonde --test` with this config; asserts success and an empty error log.
fn test_run(cfg: &Path) -> Vec<Line> {
    let r = run(&["--test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("ERROR"), "stderr: {}", r.stderr);
    parse(&r.stdout)
}

/// `sonde --test` with the `HOST_*` variables pointing into `root`; returns (lines, stderr).
fn test_run_under(cfg: &Path, root: &Path) -> (Vec<Line>, String) {
    let out = Command::new(sonde_bin())
        .args(["--test", "--config", cfg.to_str().unwrap()])
        .env("HOST_PROC", root.join("proc"))
        .env("HOST_SYS", root.join("sys"))
        .env("HOST_VAR", root.join("var"))
        .env("HOST_RUN", root.join("run"))
        .env("HOST_ETC", root.join("etc"))
        .env("HOST_DEV", root.join("dev"))
        .stdin(Stdio::null())
        .output()
        .expect("run sonde");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    (parse(&String::from_utf8_lossy(&out.stdout)), stderr)
}

fn fixture(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/tests/fixtures/host")
        .join(variant)
}

// ---------------------------------------------------------------- against this machine's kernel

#[test]
fn mem_total_is_meminfo_memtotal_in_bytes() {
    let dir = TempDir::new("host-mem");
    let lines = test_run(&config(&dir, "[[inputs.mem]]\n[[inputs.swap]]"));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"))
    };
    let mem = one(&lines, "mem", &[], "total");
    assert_eq!(mem.int("total"), kb("MemTotal") * 1024);
    assert_eq!(mem.int("swap_total"), kb("SwapTotal") * 1024);
    let used_pct = mem.num("used_percent");
    assert!((0.0..=100.0).contains(&used_pct), "used_percent {used_pct}");
    let swap = one(&lines, "swap", &[], "total");
    assert_eq!(swap.int("total"), kb("SwapTotal") * 1024);
}

/// Number of CPUs in a kernel CPU list such as `0-3,6,8-9`.
fn count_cpu_list(s: &str) -> i64 {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.parse::<i64>().unwrap() - a.parse::<i64>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[test]
fn system_n_cpus_is_the_online_cpus() {
    let dir = TempDir::new("host-system");
    let lines = test_run(&config(&dir, "[[inputs.system]]"));
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let sys = one(&lines, "system", &[], "n_cpus");
    assert_eq!(sys.int("n_cpus") as i64, count_cpu_list(&online));
    let uptime = one(&lines, "system", &[], "uptime").int("uptime") as f64;
    let kernel_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // btime is whole seconds and the runs are a moment apart.
    assert!(
        (uptime - kernel_uptime).abs() <= 3.0,
        "{uptime} vs {kernel_uptime}"
    );
}

#[test]
fn disk_total_of_root_is_statvfs() {
    let dir = TempDir::new("host-disk");
    let lines = test_run(&config(&dir, "[[inputs.disk]]\n  mount_points = [\"/\"]"));
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    let rc = unsafe { libc::statvfs(c"/".as_ptr(), &mut st) };
    assert_eq!(rc, 0);
    let disk = one(&lines, "disk", &[("path", "/")], "total");
    let frsize = st.f_frsize as u64;
    assert_eq!(disk.int("total"), st.f_blocks as u64 * frsize);
    assert_eq!(disk.int("inodes_total"), st.f_files as u64);
    assert!(disk.tag("fstype").is_some_and(|t| !t.is_empty()));
    // Free space moves with other writers; it must still be within the disk.
    assert!(disk.int("free") <= disk.int("total"));
}

/// bytes_recv and bytes_sent of lo in /proc/net/dev.
fn kernel_lo_bytes() -> (u64, u64) {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let rest = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .expect("no lo in /proc/net/dev");
    let v: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[8])
}

#[test]
fn net_counters_of_lo_move_with_loopback_traffic() {
    use std::io::{Read, Write};
    let dir = TempDir::new("host-net");
    let cfg = config(
        &dir,
        "[[inputs.net]]\n  interfaces = [\"lo\"]\n  ignore_protocol_stats = true",
    );
    let lo = |lines: &[Line]| {
        let l = one(lines, "net", &[("interface", "lo")], "bytes_recv");
        (
            l.int("bytes_recv"),
            l.int("bytes_sent"),
            l.int("packets_recv"),
        )
    };
    let k0 = kernel_lo_bytes();
    let first = test_run(&cfg);
    assert!(
        find(&first, "net", &[("interface", "all")]).is_empty(),
        "ignore_protocol_stats"
    );
    let (recv1, sent1, pkts1) = lo(&first);
    assert!(recv1 >= k0.0 && sent1 >= k0.1, "sonde behind the kernel");

    const N: usize = 1 << 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(&vec![7u8; N]).unwrap();
    });
    let (mut s, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert_eq!(got.len(), N);

    let (recv2, sent2, pkts2) = lo(&test_run(&cfg));
    let k1 = kernel_lo_bytes();
    assert!(recv2 >= recv1 + N as u64, "bytes_recv {recv1} -> {recv2}");
    assert!(sent2 >= sent1 + N as u64, "bytes_sent {sent1} -> {sent2}");
    assert!(pkts2 > pkts1);
    assert!(recv2 <= k1.0 && sent2 <= k1.1, "sonde ahead of the kernel");
}

#[test]
fn cpu_total_usage_sums_to_100_on_the_second_gather() {
    let dir = TempDir::new("host-cpu");
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  interval = "1s"
  flush_interval = "100ms"

[[inputs.cpu]]
  percpu = true
  totalcpu = true
  report_active = true

[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let _agent = Agent::start(&dir, &cfg);
    let total_line = || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("cpu,cpu=cpu-total "))
            .map(String::from)
    };
    assert!(
        wait_until(Duration::from_secs(10), || total_line().is_some()),
        "no cpu-total line in 10s"
    );
    let total = parse_line(&total_line().unwrap());
    let usage = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
    ];
    let sum: f64 = usage.iter().map(|f| total.num(f)).sum();
    assert!((sum - 100.0).abs() < 0.01, "sum {sum}: {total:?}");
    assert!((total.num("usage_active") + total.num("usage_idle") - 100.0).abs() < 0.01);
    // The per-CPU lines of the same gather are there too.
    let text = std::fs::read_to_string(&out).unwrap();
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let first_ts = total_line()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let per_cpu = text
        .lines()
        .filter(|l| l.starts_with("cpu,cpu=cpu") && !l.starts_with("cpu,cpu=cpu-total"))
        .filter(|l| l.ends_with(&first_ts))
        .count();
    assert_eq!(per_cpu as i64, count_cpu_list(&online));
}

// ---------------------------------------------------------------- fixture trees of other kernels

const ALL_HOST_INPUTS: &str = r#"
[[inputs.cpu]]
  collect_cpu_time = true
[[inputs.diskio]]
[[inputs.kernel]]
[[inputs.mem]]
[[inputs.net]]
  interfaces = ["*"]
[[inputs.processes]]
[[inputs.swap]]
[[inputs.system]]
"#;

#[test]
fn modern_kernel_fixture_gives_exact_values() {
    let dir = TempDir::new("host-modern");
    let cfg = config(&dir, &format!("{ALL_HOST_INPUTS}\n[[inputs.netstat]]"));
    let (lines, stderr) = test_run_under(&cfg, &fixture("modern"));

    let mem = one(&lines, "mem", &[], "total");
    assert_eq!(mem.int("total"), 8_000_000 * 1024);
    assert_eq!(mem.int("available"), 5_000_000 * 1024);
    // cached includes SReclaimable, as gopsutil.
    assert_eq!(mem.int("cached"), (2_000_000 + 100_000) * 1024);
    assert_eq!(
        mem.int("used"),
        (8_000_000 - 3_000_000 - 200_000 - 2_100_000) * 1024
    );
    assert_eq!(mem.int("huge_pages_total"), 4);

    let swap = one(&lines, "swap", &[], "total");
    assert_eq!(swap.int("total"), 1_000_000 * 1024);
    assert_eq!(swap.int("used"), 250_000 * 1024);

    let k = one(&lines, "kernel", &[], "boot_time");
    assert_eq!(k.int("boot_time"), 1_700_000_000);
    assert_eq!(k.int("context_switches"), 987_654);
    assert_eq!(k.int("interrupts"), 123_456);
    assert_eq!(k.int("processes_forked"), 4242);
    assert_eq!(k.int("entropy_avail"), 256);

    let sys = one(&lines, "system", &[], "n_cpus");
    assert_eq!(sys.int("n_cpus"), 2);
    assert_eq!(sys.num("load1"), 0.5);
    assert_eq!(sys.num("load15"), 0.25);

    // cpu0's times: ticks at USER_HZ=100; time_user is raw (guest is taken out of usage only).
    let cpu0 = one(&lines, "cpu", &[("cpu", "cpu0")], "time_user");
    assert!((cpu0.num("time_user") - 500.0).abs() < 1e-9, "{cpu0:?}");
    assert!((cpu0.num("time_guest") - 4.0).abs() < 1e-9, "{cpu0:?}");
    assert!((cpu0.num("time_idle") - 2000.0).abs() < 1e-9);
    assert!(
        find(&lines, "cpu", &[])
            .iter()
            .all(|l| !l.fields.contains_key("usage_user"))
    );

    let eth0 = one(&lines, "net", &[("interface", "eth0")], "bytes_recv");
    assert_eq!(
        (eth0.int("bytes_recv"), eth0.int("bytes_sent")),
        (1000, 2000)
    );
    assert_eq!(eth0.num("speed"), 1000.0);

    let sda = one(&lines, "diskio", &[("name", "sda")], "reads");
    assert_eq!(sda.int("reads"), 100);
    assert_eq!(sda.int("read_bytes"), 3000 * 512);
    assert_eq!(sda.int("writes"), 50);
    assert_eq!(sda.int("write_bytes"), 7000 * 512);
    assert_eq!(sda.int("io_time"), 90);

    // Proc 2 is running (its name has spaces and parentheses), 1 sleeping, 3 a zombie,
    // 4 idle; 5 is unreadable and is not counted.
    let p = one(&lines, "processes", &[], "total");
    assert_eq!(p.int("zombies"), 1);
    assert_eq!(p.int("sleeping"), 1);
    assert_eq!(p.int("idle"), 1);
    assert_eq!(p.int("total"), 4);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("inputs.processes") && errors[0].contains("proc/5/stat"),
        "{stderr}"
    );
}

#[test]
fn old_kernel_fixture_without_newer_fields() {
    let dir = TempDir::new("host-old");
    let cfg = config(&dir, ALL_HOST_INPUTS);
    let (lines, stderr) = test_run_under(&cfg, &fixture("old"));

    // No MemAvailable and no zoneinfo: free + cached.
    let mem = one(&lines, "mem", &[], "total");
    assert_eq!(mem.int("total"), 1_000_000 * 1024);
    assert_eq!(mem.int("available"), (500_000 + 300_000) * 1024);
    // Lines the old kernel lacks read as 0 and are still present.
    assert_eq!(mem.int("sreclaimable"), 0);
    assert_eq!(mem.int("shared"), 0);

    // Seven /proc/stat columns: steal and guest are 0.
    let cpu0 = one(&lines, "cpu", &[("cpu", "cpu0")], "time_user");
    assert!((cpu0.num("time_user") - 10.0).abs() < 1e-9);
    assert_eq!(cpu0.num("time_steal"), 0.0);
    assert_eq!(cpu0.num("time_guest"), 0.0);

    let k = one(&lines, "kernel", &[], "boot_time");
    assert_eq!(k.int("boot_time"), 1_062_191_376);
    assert_eq!(k.int("disk_pages_in"), 5741);
    assert_eq!(k.int("disk_pages_out"), 1808);

    // Old /proc/net/dev without a space after the colon.
    let eth0 = one(&lines, "net", &[("interface", "eth0")], "bytes_recv");
    assert_eq!((eth0.int("bytes_recv"), eth0.int("bytes_sent")), (123, 456));

    // 2.6 diskstats with 11 fields.
    let hda = one(&lines, "diskio", &[("name", "hda")], "reads");
    assert_eq!(hda.int("reads"), 446_216);
    assert_eq!(hda.int("write_time"), 19_310_380);
    // The garbage hda2 line is a logged error, not a crash or a silent skip.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("inputs.diskio") && l.contains("1 malformed lines")),
        "{stderr}"
    );
}

#[test]
fn fixture_with_extra_columns_ignores_them() {
    let dir = TempDir::new("host-extra");
    let cfg = config(
        &dir,
        "[[inputs.cpu]]\n  collect_cpu_time = true\n[[inputs.kernel]]\n[[inputs.mem]]\n[[inputs.system]]",
    );
    let (lines, _stderr) = test_run_under(&cfg, &fixture("extra"));

    let mem = one(&lines, "mem", &[], "total");
    assert_eq!(mem.int("total"), 4_000_000 * 1024);
    assert_eq!(mem.int("free"), 1_000_000 * 1024);

    let sys = one(&lines, "system", &[], "load1");
    assert_eq!(
        (sys.num("load1"), sys.num("load5"), sys.num("load15")),
        (1.0, 2.0, 3.0)
    );
    assert_eq!(sys.int("n_cpus"), 2);

    // Twelve columns in /proc/stat: the two unknown ones are ignored.
    let total = one(&lines, "cpu", &[("cpu", "cpu-total")], "time_user");
    assert!((total.num("time_user") - 20.0).abs() < 1e-9);
    assert!((total.num("time_idle") - 90.0).abs() < 1e-9);

    let k = one(&lines, "kernel", &[], "boot_time");
    assert_eq!(k.int("context_switches"), 77);
    assert_eq!(k.int("processes_forked"), 55);
}

#[test]
fn broken_meminfo_is_a_logged_counted_error_and_other_inputs_report() {
    let dir = TempDir::new("host-broken");
    // A host whose meminfo lacks MemTotal, but whose stat and loadavg are fine.
    let root = dir.join("host");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    for f in ["stat", "loadavg"] {
        std::fs::copy(
            fixture("modern").join("proc").join(f),
            root.join("proc").join(f),
        )
        .unwrap();
    }
    std::fs::copy(
        fixture("broken").join("proc/meminfo"),
        root.join("proc/meminfo"),
    )
    .unwrap();

    let cfg = config(&dir, "[[inputs.mem]]\n[[inputs.kernel]]\n[[inputs.system]]");
    let (lines, stderr) = test_run_under(&cfg, &root);
    assert!(find(&lines, "mem", &[]).is_empty(), "no mem metric");
    assert_eq!(
        one(&lines, "system", &[], "n_cpus").int("n_cpus"),
        2,
        "system still reports"
    );
    assert_eq!(
        one(&lines, "kernel", &[], "boot_time").int("context_switches"),
        987_654
    );
    let logged = stderr
        .lines()
        .any(|l| l.contains("ERROR") && l.contains("mem") && l.contains("MemTotal"));
    assert!(logged, "no mem error logged: {stderr}");

    // Counted: in run mode, internal_gather for mem shows the errors.
    let out = dir.join("out.lp");
    let run_cfg = dir.write(
        "run.toml",
        &format!(
            r#"
[agent]
  omit_hostname = true
  interval = "500ms"
  flush_interval = "100ms"
[[inputs.mem]]
[[inputs.system]]
[[inputs.internal]]
[[outputs.file]]
  files = ["{}"]
"#,
            out.display()
        ),
    );
    let mut child = Command::new(sonde_bin())
        .args(["--config", run_cfg.to_str().unwrap()])
        .env("HOST_PROC", root.join("proc"))
        .env("HOST_SYS", root.join("sys"))
        .env("HOST_VAR", root.join("var"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let counted = wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        parse(&text).iter().any(|l| {
            l.name == "internal_gather" && l.tag("input") == Some("mem") && l.int("errors") >= 1
        }) && text.lines().any(|l| l.starts_with("system "))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        counted,
        "no internal_gather,input=mem errors>=1 in: {}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
}

// ---------------------------------------------------------------- the embedded default

#[test]
fn embedded_default_config_reports_host_metrics() {
    // No --config and no /etc/sonde/sonde.toml is assumed on test machines; skip otherwise.
    if Path::new("/etc/sonde/sonde.toml").exists() {
        eprintln!("skipped: /etc/sonde/sonde.toml exists");
        return;
    }
    let r = run(&["--test"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let lines = parse(&r.stdout);
    // cpu is gathered twice half a second apart, as Telegraf's --test does, so its usage shows.
    for name in [
        "cpu",
        "disk",
        "diskio",
        "kernel",
        "mem",
        "processes",
        "swap",
        "system",
    ] {
        assert!(
            lines.iter().any(|l| l.name == name),
            "no {name} metric in:\n{}",
            r.stdout
        );
    }
    assert!(
        !lines.iter().any(|l| l.name.starts_with("internal")),
        "inputs.internal is not in the default"
    );
    let total = lines
        .iter()
        .find(|l| l.name == "cpu" && l.tag("cpu") == Some("cpu-total"))
        .unwrap_or_else(|| panic!("no cpu-total in:\n{}", r.stdout));
    for f in ["usage_user", "usage_system", "usage_idle"] {
        assert!(total.fields.contains_key(f), "{f} missing: {}", r.stdout);
    }
}
