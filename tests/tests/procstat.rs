//! inputs.procstat against processes the test starts: known RSS and open files (a Python
//! process), a CPU burner, a cgroup made by the test; values checked against /proc/<pid>/* in
//! the same run.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;

use sonde_tests::{Agent, TempDir, run, wait_until};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
struct Line {
    name: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
}

impl Line {
    fn int(&self, k: &str) -> i64 {
        let v = self
            .fields
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing: {self:?}"));
        v.trim_end_matches('i').parse().unwrap()
    }
    fn float(&self, k: &str) -> f64 {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing: {self:?}"))
            .parse()
            .unwrap()
    }
}

/// Line protocol with tag values free of spaces; string fields may hold spaces (quoted).
fn parse(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    // A string field (another process's cmdline) may hold a raw newline inside its quotes,
    // as Telegraf writes it: split lines outside quotes only.
    let lines = sonde_tests::split_lp(text, '\n');
    for l in lines.iter().filter(|l| l.starts_with("procstat")) {
        // The series ends at the first space not escaped (tag values may hold `\ `).
        let b = l.as_bytes();
        let cut = (0..b.len())
            .find(|&i| b[i] == b' ' && (i == 0 || b[i - 1] != b'\\'))
            .unwrap();
        let (series, rest) = (&l[..cut], &l[cut + 1..]);
        let rest = &rest[..rest.rfind(' ').unwrap()];
        let mut it = series.split(',');
        let name = it.next().unwrap().to_string();
        let tags = it
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.replace("\\ ", " "))
            })
            .collect();
        let mut fields = BTreeMap::new();
        let (mut key, mut val, mut in_key, mut quoted) =
            (String::new(), String::new(), true, false);
        for c in rest.chars() {
            match c {
                '=' if in_key => in_key = false,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    fields.insert(std::mem::take(&mut key), std::mem::take(&mut val));
                    in_key = true;
                }
                _ if in_key => key.push(c),
                _ => val.push(c),
            }
        }
        fields.insert(key, val);
        out.push(Line { name, tags, fields });
    }
    out
}

fn status_kb(pid: u32, key: &str) -> i64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse::<i64>()
        .unwrap()
        * 1024
}

fn stat_field(pid: u32, n: usize) -> i64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
}

#[test]
fn procstat_against_processes_the_test_starts() {
    let dir = TempDir::new("procstat");
    // 48 MiB touched (RSS) and 20 open files, then wait.
    let files = dir.path().display().to_string();
    let py = Kill(
        Command::new("python3")
            .args([
                "-c",
                &format!(
                    // One line: a newline in the command line would be one in the output too.
                    "import time; b=b'\\x01'*(48<<20); \
                     fs=[open('{files}/f%d'%i,'w') for i in range(20)]; time.sleep(120)"
                ),
                "sonde-mem-marker",
            ])
            .spawn()
            .unwrap(),
    );
    let burn = Kill(
        Command::new("sh")
            .args(["-c", "while :; do :; done", "sonde-burn-marker"])
            .spawn()
            .unwrap(),
    );
    let (py_pid, burn_pid) = (py.0.id(), burn.0.id());
    assert!(wait_until(Duration::from_secs(20), || {
        std::fs::read_dir(format!("/proc/{py_pid}/fd")).map_or(0, |d| d.count()) >= 23
            && status_kb(py_pid, "VmRSS") > 48 << 20
    }));
    // A cgroup of the test's own (cgroup v1 `pids` hierarchy or the v2 root) holding the burner.
    let base = if std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        "/sys/fs/cgroup/pids"
    } else {
        "/sys/fs/cgroup"
    };
    let cg = format!("{base}/sonde-procstat-{}", std::process::id());
    std::fs::create_dir(&cg).unwrap();
    std::fs::write(format!("{cg}/cgroup.procs"), burn_pid.to_string()).unwrap();
    struct Rmdir(String, u32);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            // Move the burner back out so the cgroup can go.
            let parent = std::path::Path::new(&self.0)
                .parent()
                .unwrap()
                .join("cgroup.procs");
            let _ = std::fs::write(parent, self.1.to_string());
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rmdir(cg.clone(), burn_pid);

    let pidfile = dir.write("py.pid", &format!("{py_pid}\n"));
    let me_pidfile = dir.write("me.pid", &format!("{}\n", std::process::id()));
    let out = dir.join("out.lp");
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\ninterval = '1s'\nflush_interval = '1s'\nomit_hostname = true\n\
             [[inputs.procstat]]\npid_file = '{}'\ntag_with = ['pid']\n\
             [[inputs.procstat]]\npattern = 'sonde-burn-marke[r]'\npid_finder = 'native'\n\
             [[inputs.procstat]]\ncgroup = '{}'\nprefix = 'cg'\n\
             [[inputs.procstat]]\nexe = '^python3$'\nuser = 'root'\n\
             [[inputs.procstat]]\npattern = 'no-such-process-anywhere-[x]'\n\
             [[inputs.procstat]]\ntag_with = ['level']\n\
             [[inputs.procstat.filter]]\nname = 'kids'\npid_files = ['{me}']\nrecursion_depth = 1\n\
             [[inputs.procstat.filter]]\nname = 'burner'\npatterns = ['sonde-burn-marke[r]']\n\
             process_names = ['sh', 'dash', 'bash']\nusers = ['ro*']\nexecutables = ['*sh']\n\
             [[outputs.file]]\nfiles = ['{}']\n",
            pidfile.display(),
            cg.replacen("/sys/fs/cgroup/", "", 1)
                .replace(&format!("-{}", std::process::id()), "-*"),
            out.display(),
            me = me_pidfile.display(),
        ),
    );
    let agent = Agent::start(&dir, &cfg);
    let read = || parse(&std::fs::read_to_string(&out).unwrap_or_default());
    let ok = wait_until(Duration::from_secs(30), || {
        read()
            .iter()
            .filter(|l| {
                l.name == "procstat"
                    && l.tags.contains_key("pidfile")
                    && !l.tags.contains_key("filter")
            })
            .count()
            >= 3
    });
    assert!(ok, "log:\n{}", agent.log());
    // Values from /proc right after the agent's gathers.
    let rss = status_kb(py_pid, "VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{py_pid}/fd"))
        .unwrap()
        .count() as i64;
    let burn_ticks = stat_field(burn_pid, 14) + stat_field(burn_pid, 15);
    drop(agent);
    let lines = read();

    let py_lines: Vec<&Line> = lines
        .iter()
        .filter(|l| {
            l.name == "procstat" && l.tags.contains_key("pidfile") && !l.tags.contains_key("filter")
        })
        .collect();
    let m = py_lines.last().unwrap();
    assert_eq!(m.tags["pid"], py_pid.to_string());
    assert_eq!(m.tags["process_name"], "python3");
    assert!(
        (m.int("memory_rss") - rss).abs() < 4 << 20,
        "{} vs {rss}",
        m.int("memory_rss")
    );
    assert!(m.int("memory_rss") > 48 << 20);
    assert_eq!(m.int("num_fds"), fds);
    assert!(m.fields["cmdline"].contains("sonde-mem-marker"), "{m:?}");
    assert_eq!(m.fields["user"], "root");
    assert_eq!(m.int("ppid"), std::process::id() as i64);
    assert_eq!(m.int("rlimit_num_fds_soft"), {
        let l = std::fs::read_to_string(format!("/proc/{py_pid}/limits")).unwrap();
        let line = l
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(3)
            .unwrap()
            .parse::<i64>()
            .unwrap()
            .min(i32::MAX as i64)
    });
    let clk = 100.0; // USER_HZ on Linux
    let created = (std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse::<i64>()
        .unwrap()
        * 1000
        + stat_field(py_pid, 22) * 1000 / clk as i64)
        * 1_000_000;
    assert_eq!(m.int("created_at"), created);
    assert!(m.int("memory_pss") > 40 << 20);
    let lookup = lines
        .iter()
        .rfind(|l| l.name == "procstat_lookup" && l.tags.contains_key("pidfile"))
        .unwrap();
    assert_eq!(
        (
            lookup.int("pid_count"),
            lookup.int("running"),
            lookup.int("result_code")
        ),
        (1, 1, 0)
    );
    assert_eq!(lookup.tags["result"], "success");

    // The burner by pattern: CPU time below /proc's after the run, usage near one CPU.
    let b: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.contains_key("pattern"))
        .collect();
    assert!(b.iter().all(|l| l.int("pid") == burn_pid as i64));
    let last = b.last().unwrap();
    let cpu_s = last.float("cpu_time_user") + last.float("cpu_time_system");
    assert!(cpu_s <= burn_ticks as f64 / clk + 1e-9);
    // A busy loop; on a loaded 2-core machine it may get only a share of one CPU, but far
    // more than the ~0 of an idle process.
    assert!(last.float("cpu_usage") > 5.0, "{}", last.float("cpu_usage"));
    assert!(!b[0].fields.contains_key("cpu_usage"));

    // The cgroup (glob): the burner, prefixed fields, cgroup and cgroup_full tags.
    let c = lines
        .iter()
        .rfind(|l| l.name == "procstat" && l.tags.contains_key("cgroup"))
        .unwrap_or_else(|| panic!("no cgroup metric: {lines:?}"));
    assert_eq!(c.int("pid"), burn_pid as i64);
    assert_eq!(c.tags["cgroup_full"], cg);
    assert!(c.int("cg_num_threads") >= 1);

    // exe (takes precedence over user, as in Telegraf) with pgrep: our python among them.
    let e: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("exe").is_some_and(|v| v == "^python3$"))
        .collect();
    assert!(e.iter().any(|l| l.int("pid") == py_pid as i64));

    // Nothing found: a successful lookup with zero pids.
    let none = lines
        .iter()
        .rfind(|l| {
            l.name == "procstat_lookup"
                && l.tags
                    .get("pattern")
                    .is_some_and(|p| p.starts_with("no-such"))
        })
        .unwrap();
    assert_eq!((none.int("pid_count"), none.int("result_code")), (0, 0));

    // Filter blocks: the test's own children at level 1 with their parent; the burner by
    // pattern, name, user and executable; one lookup per filter (and per level).
    let kids: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("filter").is_some_and(|f| f == "kids"))
        .collect();
    let me = std::process::id().to_string();
    assert!(
        kids.iter()
            .any(|l| l.tags["level"] == "0" && l.int("pid").to_string() == me)
    );
    for child in [py_pid, burn_pid] {
        let c = kids
            .iter()
            .find(|l| l.int("pid") == child as i64)
            .unwrap_or_else(|| panic!("child {child} missing: {kids:?}"));
        assert_eq!(
            (c.tags["level"].as_str(), c.tags["parent_pid"].as_str()),
            ("1", me.as_str())
        );
    }
    let burner: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("filter").is_some_and(|f| f == "burner"))
        .collect();
    assert!(!burner.is_empty() && burner.iter().all(|l| l.int("pid") == burn_pid as i64));
    let fl = lines
        .iter()
        .rfind(|l| {
            l.name == "procstat_lookup"
                && l.tags.get("filter").is_some_and(|f| f == "burner")
                && !l.fields.contains_key("level")
        })
        .unwrap();
    assert_eq!((fl.int("pid_count"), fl.int("running")), (1, 1));
    assert!(lines.iter().any(|l| l.name == "procstat_lookup"
        && l.tags.get("filter").is_some_and(|f| f == "kids")
        && l.fields.get("level").is_some_and(|v| v == "1i")));

    // A missing pid file: a lookup error metric and a gather error, in --test too.
    let bad = dir.write(
        "bad.toml",
        &format!(
            "[[inputs.procstat]]\npid_file = '{}/missing.pid'\n[[outputs.file]]\n",
            files
        ),
    );
    let r = run(&["--config", bad.to_str().unwrap(), "--test"]);
    assert!(
        r.stdout.contains("result=lookup_error") && r.stdout.contains("result_code=1i"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("missing.pid"), "{}", r.stderr);
}

/// Runs `sonde --test` on a config in `dir`, with `dir` as working directory and `bin` (if
/// any) first on PATH.
fn test_run(dir: &TempDir, cfg: &std::path::Path, bin: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new(sonde_tests::sonde_bin());
    cmd.args(["--config", cfg.to_str().unwrap(), "--test"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null());
    if let Some(b) = bin {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", b.display()));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sonde --test failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The children of a process, from /proc/*/stat.
fn children_of(ppid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s[s.rfind(')').unwrap() + 2..]
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|pp| pp == ppid.to_string())
            })
        })
        .collect();
    out.sort_unstable();
    out
}

fn pids_of<'a>(lines: impl Iterator<Item = &'a Line>) -> Vec<u32> {
    let mut v: Vec<u32> = lines
        .map(|l| {
            l.tags
                .get("pid")
                .map(|p| p.parse().unwrap())
                .unwrap_or_else(|| l.int("pid") as u32)
        })
        .collect();
    v.sort_unstable();
    v
}

/// The `sockets` property against a Python process with known sockets: TCP listeners (IPv4
/// and IPv6), an established loopback connection both ways with known byte counts, UDP
/// sockets, a unix stream listener, a unix socket pair and a unix datagram socket.
#[test]
fn procstat_sockets_of_a_process_the_test_starts() {
    let dir = TempDir::new("procstat-sock");
    let d = dir.path().display().to_string();
    let script = r#"
import json, socket, sys, time
d = sys.argv[1]
l4 = socket.socket(); l4.bind(('127.0.0.1', 0)); l4.listen(5)
l6 = socket.socket(socket.AF_INET6); l6.bind(('::1', 0)); l6.listen(5)
c = socket.create_connection(l4.getsockname()); a, _ = l4.accept()
c.sendall(b'x' * 1000)
got = b''
while len(got) < 1000: got += a.recv(4096)
a.sendall(b'y' * 300)
got = b''
while len(got) < 300: got += c.recv(4096)
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u4.bind(('127.0.0.1', 0))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(('::1', 0))
ux = socket.socket(socket.AF_UNIX); ux.bind(d + '/s.sock'); ux.listen(3)
p1, p2 = socket.socketpair()
ud = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); ud.bind(d + '/d.sock')
print(json.dumps({'l4': l4.getsockname()[1], 'l6': l6.getsockname()[1],
    'c': c.getsockname()[1], 'u4': u4.getsockname()[1], 'u6': u6.getsockname()[1],
    'p1': p1.fileno(), 'p2': p2.fileno()}), flush=True)
time.sleep(120)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &d])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let py = Kill(child);
    let pid = py.0.id();
    let num = |k: &str| -> i64 {
        let i = first.find(&format!("\"{k}\": ")).unwrap() + k.len() + 4;
        first[i..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let inode = |fd: i64| -> i64 {
        let t = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        let t = t.to_str().unwrap();
        t["socket:[".len()..t.len() - 1].parse().unwrap()
    };
    let (l4, l6, cport, u4, u6) = (num("l4"), num("l6"), num("c"), num("u4"), num("u6"));
    let (p1, p2) = (inode(num("p1")), inode(num("p2")));

    let pidfile = dir.write("py.pid", &pid.to_string());
    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\nomit_hostname = true\n\
             [[inputs.procstat]]\npid_file = '{p}'\nprocess_name = 'all'\n\
             properties = ['sockets']\ntag_with = ['pid']\n\
             [[inputs.procstat]]\npid_file = '{p}'\nprocess_name = 'some'\n\
             properties = ['sockets']\nsocket_protocols = ['udp4', 'unix']\n\
             tag_with = ['protocol', 'state', 'src_port', 'name']\n\
             [[outputs.file]]\n",
            p = pidfile.display()
        ),
    );
    let out = test_run(&dir, &cfg, None);
    let lines = parse(&out);
    let all: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat_socket" && l.tags["process_name"] == "all")
        .collect();
    // Every socket line carries the process's tags and its pid.
    assert!(
        all.iter().all(|l| l.tags["pid"] == pid.to_string()
            && l.int("pid") == pid as i64
            && l.tags["pidfile"] == pidfile.display().to_string()),
        "{all:?}"
    );
    let find = |proto: &str, pred: &dyn Fn(&Line) -> bool| -> &Line {
        all.iter()
            .copied()
            .find(|l| l.fields["protocol"] == proto && pred(l))
            .unwrap_or_else(|| panic!("no {proto} socket as expected in {all:#?}"))
    };
    let s = |l: &Line, k: &str| l.fields[k].trim_matches('"').to_string();

    let listen4 = find("tcp4", &|l| {
        l.int("src_port") == l4 && s(l, "state") == "listen"
    });
    assert_eq!(
        (
            s(listen4, "src"),
            s(listen4, "dest"),
            listen4.int("dest_port")
        ),
        ("127.0.0.1".into(), "0.0.0.0".into(), 0)
    );
    let listen6 = find("tcp6", &|l| l.int("src_port") == l6);
    assert_eq!(
        (s(listen6, "src"), s(listen6, "state")),
        ("::1".into(), "listen".into())
    );
    // The connection, both ends: bytes as sent and received by the script.
    let client = find("tcp4", &|l| l.int("src_port") == cport);
    assert_eq!(s(client, "state"), "established");
    assert_eq!(client.int("dest_port"), l4);
    assert_eq!(
        (client.int("bytes_sent"), client.int("bytes_received")),
        (1000, 300)
    );
    let server = find("tcp4", &|l| {
        l.int("src_port") == l4 && s(l, "state") == "established"
    });
    assert_eq!(server.int("dest_port"), cport);
    assert_eq!(
        (server.int("bytes_received"), server.int("bytes_sent")),
        (1000, 300)
    );
    for l in [client, server] {
        assert_eq!((l.int("lost"), l.int("retransmits")), (0, 0));
        assert_eq!((l.int("rx_queue"), l.int("tx_queue")), (0, 0));
    }
    let udp4 = find("udp4", &|l| l.int("src_port") == u4);
    assert_eq!(s(udp4, "state"), "closed");
    assert!(!udp4.fields.contains_key("bytes_sent"));
    find("udp6", &|l| l.int("src_port") == u6);
    let ulisten = find("unix", &|l| s(l, "name") == format!("{d}/s.sock"));
    assert_eq!(
        (s(ulisten, "state"), s(ulisten, "type")),
        ("listen".into(), "stream".into())
    );
    assert_eq!(ulisten.int("tx_queue"), 3, "the backlog of listen(3)");
    let pair1 = find("unix", &|l| l.int("inode") == p1);
    assert_eq!(
        (s(pair1, "state"), pair1.int("peer"), s(pair1, "name")),
        ("established".into(), p2, format!("inode-{p1}"))
    );
    let dgram = find("unix", &|l| s(l, "name") == format!("{d}/d.sock"));
    assert_eq!(s(dgram, "type"), "dgram");
    // Exactly the sockets the script made: 2 listeners + 2 ends, 2 UDP, 4 unix.
    assert_eq!(all.len(), 10, "{all:#?}");

    // Only udp4 and unix, with protocol, state, src_port and name as tags.
    let some: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat_socket" && l.tags["process_name"] == "some")
        .collect();
    assert_eq!(some.len(), 5, "{some:#?}");
    assert!(
        some.iter()
            .all(|l| ["udp4", "unix"].contains(&l.tags["protocol"].as_str())
                && !l.fields.contains_key("protocol")
                && l.tags.contains_key("state"))
    );
    let u = some.iter().find(|l| l.tags["protocol"] == "udp4").unwrap();
    assert_eq!(u.tags["src_port"], u4.to_string());
    assert!(
        some.iter()
            .any(|l| l.tags.get("name") == Some(&format!("{d}/s.sock")))
    );
    // The procstat metric itself is there for both.
    assert_eq!(lines.iter().filter(|l| l.name == "procstat").count(), 2);
}

/// `supervisor_units` and the filter blocks' `supervisor_units` against a private supervisord
/// (own config, socket and pid file in the test's directory). sonde runs with that directory
/// as working directory, where supervisorctl finds `supervisord.conf` as it does in Telegraf's
/// setup with the system's config. As in Telegraf, a program's processes are the children of
/// the process supervisord started.
#[test]
fn procstat_supervisor_units() {
    let dir = TempDir::new("procstat-sup");
    let d = dir.path().display().to_string();
    let conf = dir.write(
        "supervisord.conf",
        &format!(
            "[unix_http_server]\nfile={d}/supervisor.sock\n\
             [supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
             childlogdir={d}\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\
             [program:web]\ncommand=sh -c 'sleep 1001 & sleep 1002 & wait'\n\
             stopasgroup=true\nkillasgroup=true\n\
             [program:worker]\ncommand=sh -c 'sleep 1003 & wait'\nstopasgroup=true\n\
             killasgroup=true\n\
             [program:lonely]\ncommand=sleep 1004\n\
             [program:broken]\ncommand=false\nstartsecs=1\nstartretries=0\nautorestart=false\n\
             [program:idle]\ncommand=sleep 1005\nautostart=false\n"
        ),
    );
    /// Stops supervisord with SIGTERM so that it stops its programs' process groups.
    struct Supervisord(Child);
    impl Drop for Supervisord {
        fn drop(&mut self) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            if !wait_until(Duration::from_secs(15), || {
                matches!(self.0.try_wait(), Ok(Some(_)))
            }) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let sup = Supervisord(
        Command::new("supervisord")
            .args(["-c", conf.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("supervisord (Debian package supervisor; tests/setup.sh installs it)"),
    );
    let ctl = |args: &[&str]| -> String {
        let out = Command::new("supervisorctl")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // "web    RUNNING   pid 123, uptime 0:00:02"
    let main_pid = |status: &str, name: &str| -> u32 {
        status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name) && l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|p| p.trim_end_matches(',').parse().ok())
            .unwrap_or(0)
    };
    // Running with their children, and `broken` given up.
    let mut st = String::new();
    let ready = wait_until(Duration::from_secs(30), || {
        st = ctl(&["status"]);
        st.contains("FATAL")
            && children_of(main_pid(&st, "web")).len() == 2
            && children_of(main_pid(&st, "worker")).len() == 1
            && main_pid(&st, "lonely") > 0
    });
    assert!(ready, "supervisord status:\n{st}");
    let (web, worker) = (main_pid(&st, "web"), main_pid(&st, "worker"));
    let (web_kids, worker_kids) = (children_of(web), children_of(worker));

    let cfg = dir.write(
        "sonde.toml",
        "[agent]\nomit_hostname = true\n\
         [[inputs.procstat]]\nsupervisor_units = ['web', 'worker', 'lonely', 'broken', 'idle']\n\
         pid_finder = 'native'\n\
         [[inputs.procstat]]\nprocess_name = 'filtered'\n\
         [[inputs.procstat.filter]]\nname = 'sup'\nsupervisor_units = ['web', 'worker', 'idle']\n\
         patterns = ['sleep 100[13]']\n\
         [[outputs.file]]\n",
    );
    let out = test_run(&dir, &cfg, None);
    let lines = parse(&out);
    let old: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && !l.tags.contains_key("filter"))
        .collect();
    let mut expected: Vec<u32> = web_kids.iter().chain(&worker_kids).copied().collect();
    expected.sort_unstable();
    assert_eq!(pids_of(old.iter().copied()), expected, "{out}");
    for l in &old {
        let unit = if web_kids.contains(&(l.int("pid") as u32)) {
            "web"
        } else {
            "worker"
        };
        assert_eq!(l.tags["supervisor_unit"], unit);
        assert_eq!(l.tags["status"], "RUNNING");
        // supervisorctl's uptime, H:MM:SS.
        assert!(l.tags["uptimes"].starts_with("0:00:"), "{l:?}");
        assert_eq!(l.tags["process_name"], "sleep");
    }
    let lookup = lines
        .iter()
        .find(|l| l.name == "procstat_lookup" && !l.tags.contains_key("filter"))
        .unwrap();
    assert_eq!(
        lookup.tags["supervisor_unit"],
        "web;worker;lonely;broken;idle"
    );
    assert_eq!(
        (
            lookup.int("pid_count"),
            lookup.int("running"),
            lookup.int("result_code")
        ),
        (3, 3, 0)
    );
    // Telegraf merges every unit's tags into the lookup's: `broken`'s error is among them.
    assert_eq!(
        lookup.tags["error"],
        "Exited too quickly (process log may have details)"
    );

    // The filter: children of the running units, then the pattern; parent_pid is the unit's.
    let f: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("filter").is_some_and(|f| f == "sup"))
        .collect();
    let want: Vec<u32> = {
        let mut v: Vec<u32> = web_kids
            .iter()
            .chain(&worker_kids)
            .copied()
            .filter(|p| {
                let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap();
                let c = String::from_utf8_lossy(&c);
                c.contains("1001") || c.contains("1003")
            })
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(want.len(), 2);
    assert_eq!(pids_of(f.iter().copied()), want, "{out}");
    for l in &f {
        let parent = if l.tags["supervisor_unit"] == "web" {
            web
        } else {
            worker
        };
        assert_eq!(l.tags["parent_pid"], parent.to_string());
        assert_eq!(l.tags["process_name"], "filtered");
    }
    let fl = lines
        .iter()
        .find(|l| l.name == "procstat_lookup" && l.tags.get("filter").is_some_and(|f| f == "sup"))
        .unwrap();
    assert_eq!((fl.int("pid_count"), fl.int("running")), (2, 2));

    // Without a reachable supervisord: a lookup error and a gather error.
    drop(sup);
    for p in web_kids.iter().chain(&worker_kids) {
        assert!(
            wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!(
                "/proc/{p}"
            ))
            .exists()),
            "supervisord left {p} running"
        );
    }
    let out = Command::new(sonde_tests::sonde_bin())
        .args(["--config", cfg.to_str().unwrap(), "--test"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("result=lookup_error"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("supervisorctl"));
}

/// A stand-in for systemd's `systemctl`: systemd cannot run here (PID 1 is not systemd), so
/// this script answers the two queries procstat makes, `systemctl show` (all properties, or
/// `--property=`) and `systemctl list-unit-files --no-legend --state=... -- PATTERN...`, in
/// systemd's (252) output format and exit codes (list-unit-files exits 1 silently when nothing
/// matches; show refuses template names), from a table `units` (name, unit-file state,
/// MainPID; `-` for a unit that has no MainPID, such as a timer). Every call is appended to
/// `systemctl.calls`.
const SYSTEMCTL: &str = r#"
here=$(cd "$(dirname "$0")/.." && pwd)
echo "$*" >> "$here/systemctl.calls"
cmd=$1; shift
props=""; states=""; names=""
for a in "$@"; do
  case $a in
    --property=*) props=$(echo "${a#--property=}" | tr , ' ');;
    --state=*) states=$(echo "${a#--state=}" | tr , ' ');;
    --*) ;;
    *) names="$names $a";;
  esac
done
case $cmd in
show)
  for n in $names; do
    case $n in *@.*)
      echo "Failed to get properties: Unit name $n is neither a valid invocation ID nor unit ID." >&2
      exit 1;;
    esac
  done
  first=1
  for n in $names; do
    [ $first = 1 ] || echo
    first=0
    found=0
    while read -r name state pid; do
      [ "$name" = "$n" ] || continue
      found=1
      for p in ${props:-Id Names Type MainPID ControlGroup ActiveState UnitFileState}; do
        case $p in
          Id|Names) echo "$p=$name";;
          Type) [ "$pid" = - ] || echo "Type=simple";;
          MainPID) [ "$pid" = - ] || echo "MainPID=$pid";;
          ControlGroup) echo "ControlGroup=/system.slice/$name";;
          ActiveState) if [ "$pid" = 0 ]; then echo ActiveState=inactive; else echo ActiveState=active; fi;;
          UnitFileState) echo "UnitFileState=$state";;
        esac
      done
    done < "$here/units"
    if [ $found = 0 ]; then
      # systemd's answer for a unit it does not know.
      for p in ${props:-Id Names MainPID ActiveState}; do
        case $p in
          Id|Names) echo "$p=$n";;
          MainPID) echo "MainPID=0";;
          ActiveState) echo "ActiveState=inactive";;
        esac
      done
    fi
  done;;
list-unit-files)
  any=0
  while read -r name state pid; do
    ok=0
    for s in ${states:-$state}; do [ "$s" = "$state" ] && ok=1; done
    [ $ok = 1 ] || continue
    for p in $names; do
      case $name in $p) printf '%-40s %-8s enabled\n' "$name" "$state"; any=1; break;; esac
    done
  done < "$here/units"
  [ $any = 1 ] || exit 1;;
*) echo "Unknown command verb '$cmd'." >&2; exit 1;;
esac
"#;

/// `systemd_unit` (MainPID through `systemctl show`), `include_systemd_children` (the unit's
/// cgroup, which the test makes and fills) and the filter blocks' `systemd_units` (unit files
/// by pattern, then MainPID), with the `systemctl` stand-in above on PATH.
#[test]
fn procstat_systemd_units() {
    let dir = TempDir::new("procstat-systemd");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    dir.script("bin/systemctl", SYSTEMCTL);
    let main = Kill(Command::new("sleep").arg("1011").spawn().unwrap());
    let kid1 = Kill(Command::new("sleep").arg("1012").spawn().unwrap());
    let kid2 = Kill(Command::new("sleep").arg("1013").spawn().unwrap());
    let (main_pid, k1, k2) = (main.0.id(), kid1.0.id(), kid2.0.id());
    let me = std::process::id();
    dir.write(
        "units",
        &format!(
            "sonde-web-{me}.service enabled {main_pid}\n\
             sonde-web-{me}-idle.service disabled 0\n\
             sonde-web-{me}@.service static -\n\
             sonde-web-{me}.timer enabled -\n\
             sonde-web-{me}-masked.service masked 0\n\
             other.service enabled 1\n"
        ),
    );

    // The unit's cgroup where Telegraf looks: the v1 systemd hierarchy's system.slice when
    // that hierarchy is mounted, else the unified hierarchy's.
    let slice = if std::path::Path::new("/sys/fs/cgroup/systemd").is_dir() {
        "/sys/fs/cgroup/systemd/system.slice"
    } else {
        "/sys/fs/cgroup/system.slice"
    };
    let made_slice = !std::path::Path::new(slice).exists();
    std::fs::create_dir_all(slice).unwrap();
    let unit_cg = format!("{slice}/sonde-kids-{me}.service");
    std::fs::create_dir(&unit_cg).unwrap();
    struct Cleanup(String, String, bool, Vec<u32>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // Move the processes back to the hierarchy's root so the cgroups can go.
            let root = std::path::Path::new(&self.1)
                .parent()
                .unwrap()
                .join("cgroup.procs");
            for p in &self.3 {
                let _ = std::fs::write(&root, p.to_string());
            }
            let _ = std::fs::remove_dir(&self.0);
            if self.2 {
                let _ = std::fs::remove_dir(&self.1);
            }
        }
    }
    let _cleanup = Cleanup(unit_cg.clone(), slice.to_string(), made_slice, vec![k1, k2]);
    for p in [k1, k2] {
        std::fs::write(format!("{unit_cg}/cgroup.procs"), p.to_string()).unwrap();
    }

    let cfg = dir.write(
        "sonde.toml",
        &format!(
            "[agent]\nomit_hostname = true\n\
             [[inputs.procstat]]\nsystemd_unit = 'sonde-web-{me}.service'\n\
             [[inputs.procstat]]\nsystemd_unit = 'sonde-web-{me}-idle.service'\n\
             [[inputs.procstat]]\nsystemd_unit = 'sonde-kids-{me}.serv*'\n\
             include_systemd_children = true\n\
             [[inputs.procstat]]\n\
             [[inputs.procstat.filter]]\nname = 'units'\nsystemd_units = ['sonde-web-{me}*']\n\
             [[inputs.procstat.filter]]\nname = 'none'\nsystemd_units = ['no-such-unit-*']\n\
             [[outputs.file]]\n"
        ),
    );
    let out = test_run(&dir, &cfg, Some(&bin));
    let lines = parse(&out);
    let web = format!("sonde-web-{me}.service");

    // MainPID: exactly the main process, tagged with the unit.
    let m: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("systemd_unit") == Some(&web))
        .filter(|l| !l.tags.contains_key("filter"))
        .collect();
    assert_eq!(pids_of(m.iter().copied()), vec![main_pid], "{out}");
    assert_eq!(m[0].tags["process_name"], "sleep");
    assert_eq!(m[0].fields["cmdline"], "sleep 1011");
    let lookup = |unit: &str| {
        lines
            .iter()
            .find(|l| {
                l.name == "procstat_lookup"
                    && l.tags.get("systemd_unit").is_some_and(|u| u == unit)
                    && !l.tags.contains_key("filter")
            })
            .unwrap_or_else(|| panic!("no lookup for {unit}: {out}"))
    };
    assert_eq!(
        (lookup(&web).int("pid_count"), lookup(&web).int("running")),
        (1, 1)
    );
    // A unit that is not running (MainPID=0): no processes, a successful lookup.
    let idle = lookup(&format!("sonde-web-{me}-idle.service"));
    assert_eq!((idle.int("pid_count"), idle.int("result_code")), (0, 0));

    // include_systemd_children: every process of the unit's cgroup, with Telegraf's tags.
    let cg_tag = format!(
        "{}/sonde-kids-{me}.serv*",
        slice.trim_start_matches("/sys/fs/cgroup/")
    );
    let kids: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("cgroup") == Some(&cg_tag))
        .collect();
    let mut want = vec![k1, k2];
    want.sort_unstable();
    assert_eq!(pids_of(kids.iter().copied()), want, "{out}");
    assert!(kids.iter().all(|l| l.tags["cgroup_full"] == unit_cg));

    // The filter: the unit files matching the pattern (not the masked one), the services'
    // MainPID (the timer has none); one group per service unit.
    let f: Vec<&Line> = lines
        .iter()
        .filter(|l| l.name == "procstat" && l.tags.get("filter").is_some_and(|f| f == "units"))
        .collect();
    assert_eq!(pids_of(f.iter().copied()), vec![main_pid], "{out}");
    assert_eq!(f[0].tags["systemd_unit"], web);
    let fl = lines
        .iter()
        .find(|l| l.name == "procstat_lookup" && l.tags.get("filter").is_some_and(|f| f == "units"))
        .unwrap();
    assert_eq!((fl.int("pid_count"), fl.int("running")), (1, 1));
    // No unit file matching: nothing found, not an error.
    let none = lines
        .iter()
        .find(|l| l.name == "procstat_lookup" && l.tags.get("filter").is_some_and(|f| f == "none"))
        .unwrap();
    assert_eq!(
        (
            none.int("pid_count"),
            none.int("result_code"),
            none.tags["result"].as_str()
        ),
        (0, 0, "success")
    );

    // What procstat asked systemctl (not the template unit).
    let calls = std::fs::read_to_string(dir.join("systemctl.calls")).unwrap();
    assert!(calls.lines().any(|c| c == format!("show {web}")), "{calls}");
    assert!(
        calls.lines().any(|c| c
            == format!(
                "list-unit-files --no-legend --no-pager --state=enabled,disabled,static -- \
                 sonde-web-{me}*"
            )),
        "{calls}"
    );
    assert!(
        calls.lines().any(|c| c
            == format!(
                "show --property=Id,MainPID -- {web} sonde-web-{me}-idle.service \
                 sonde-web-{me}.timer"
            )),
        "{calls}"
    );

    // systemctl failing: a lookup error and a gather error.
    dir.script(
        "bin/systemctl",
        "echo 'Failed to connect to bus' >&2; exit 1",
    );
    let cfg = dir.write(
        "bad.toml",
        &format!("[[inputs.procstat]]\nsystemd_unit = '{web}'\n[[outputs.file]]\n"),
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let out = Command::new(sonde_tests::sonde_bin())
        .args(["--config", cfg.to_str().unwrap(), "--test"])
        .env("PATH", format!("{}:{path}", bin.display()))
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(so.contains("result=lookup_error"), "{so}");
    assert!(se.contains("Failed to connect to bus"), "{se}");
}
