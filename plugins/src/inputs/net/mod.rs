//! `inputs.net`: per-interface traffic from /proc/net/dev and the system-wide protocol counters
//! of /proc/net/snmp (tagged interface=all), as Telegraf's net plugin.

mod links;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::procfs::{ProcFile, read_at0};
use crate::inputs::host::{self, HostPaths, metric, push};
use crate::model::{Str, ValueType};
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, Format, InputSpec, parse_config};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Glob patterns of interfaces to report, regardless of their state. Empty: every
    /// interface that is up, except loopback.
    pub interfaces: Vec<String>,
    pub ignore_protocol_stats: bool,
}

/// The /proc/net/snmp sections gopsutil (and so Telegraf) reports.
const PROTOCOLS: &[&str] = &["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"];

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

/// The sysfs attributes read per interface; index into [`Kept::files`].
#[derive(Clone, Copy)]
enum Attr {
    Flags = 0,
    Speed = 1,
}

impl Attr {
    fn file(self) -> &'static str {
        match self {
            Attr::Flags => "flags",
            Attr::Speed => "speed",
        }
    }
}

/// An interface's attribute files, kept open and read again from offset 0 at each gather.
struct Kept {
    files: [Option<File>; 2],
    /// The gather that last saw the interface.
    seen: u64,
}

/// How many interfaces may have their files kept (two each; the rest are opened by path): a
/// 32nd of the soft open-file limit, at most 256 (32 under systemd's default of 1024).
fn max_kept() -> usize {
    // SAFETY: getrlimit writes into the struct we pass.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    (lim.rlim_cur / 32).min(256) as usize
}

struct Net {
    interfaces: Vec<glob::Pattern>,
    ignore_protocol_stats: bool,
    dev: ProcFile,
    snmp: ProcFile,
    class_net: PathBuf,
    buf: String,
    small: String,
    path: PathBuf,
    /// Opening /sys/class/net/<name>/<attr> walks a symlink into /sys/devices: most of this
    /// input's cost. So the files are kept open, by interface name, while the link watch
    /// reports no interface added, removed or renamed (a kept file follows its device, so a
    /// rename could leave a name on another device's file). Only for the host's own /proc and
    /// /sys (the watch sees the agent's network namespace); `None` reads by path every time.
    links: Option<links::LinkWatch>,
    kept: HashMap<String, Kept>,
    max_kept: usize,
    generation: u64,
    /// The first error opening an interface's file other than its absence (EMFILE, EACCES),
    /// reported once per gather.
    open_error: Option<String>,
}

impl Net {
    fn new(cfg: Config, paths: &HostPaths) -> Result<Self, String> {
        let own = paths.proc == Path::new("/proc") && paths.sys == Path::new("/sys");
        let links = own.then(links::LinkWatch::open).and_then(Result::ok);
        Self::with_links(cfg, paths, links)
    }

    fn with_links(
        cfg: Config,
        paths: &HostPaths,
        links: Option<links::LinkWatch>,
    ) -> Result<Self, String> {
        Ok(Net {
            interfaces: host::compile_globs("interfaces", &cfg.interfaces)?,
            ignore_protocol_stats: cfg.ignore_protocol_stats,
            dev: ProcFile::new(paths.proc("net/dev")),
            snmp: ProcFile::new(paths.proc("net/snmp")),
            class_net: paths.sys("class/net"),
            buf: String::new(),
            small: String::new(),
            path: PathBuf::new(),
            links,
            kept: HashMap::new(),
            max_kept: max_kept(),
            generation: 0,
            open_error: None,
        })
    }

    /// Reads a small sysfs attribute of an interface into `self.small`: from its kept file,
    /// or by path (keeping the file when there is a link watch and room).
    fn read_attr(&mut self, iface: &str, attr: Attr) -> Option<&str> {
        let keep = self.links.is_some();
        if keep && let Some(k) = self.kept.get_mut(iface) {
            k.seen = self.generation;
            if let Some(f) = &k.files[attr as usize] {
                match read_at0(f, &mut self.small) {
                    Ok(()) => return Some(self.small.trim()),
                    // The device is gone (its removal not yet seen by the watch): by path.
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                        self.kept.remove(iface);
                    }
                    Err(_) => return None,
                }
            }
        }
        self.path.clear();
        self.path.push(&self.class_net);
        self.path.push(iface);
        self.path.push(attr.file());
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound && self.open_error.is_none() {
                    self.open_error = Some(format!("{}: {e}", self.path.display()));
                }
                return None;
            }
        };
        let read = read_at0(&f, &mut self.small);
        if keep && !self.kept.contains_key(iface) && self.kept.len() < self.max_kept {
            match self.indexes(iface) {
                (Some(sys), Some(watched)) if sys == watched => {
                    let k = Kept {
                        files: [None, None],
                        seen: self.generation,
                    };
                    self.kept.insert(iface.to_string(), k);
                }
                (Some(_), Some(_)) => {
                    // This /sys shows another network namespace than the watch: its renames
                    // would go unseen. Read by path from now on.
                    self.links = None;
                    self.kept.clear();
                }
                // Gone meanwhile, or only in one of the two: not kept.
                _ => {}
            }
        }
        if let Some(k) = self.kept.get_mut(iface) {
            // Kept even when the read failed: an interface without a speed (virtual, or down)
            // fails the read, not the open, and may have one later.
            k.files[attr as usize] = Some(f);
        }
        read.ok()?;
        Some(self.small.trim())
    }

    /// The index of `iface` in /sys and in the link watch's namespace: equal when both show
    /// the same interface.
    fn indexes(&mut self, iface: &str) -> (Option<u32>, Option<u32>) {
        let Some(watch) = &self.links else {
            return (None, None);
        };
        self.path.clear();
        self.path.push(&self.class_net);
        self.path.push(iface);
        self.path.push("ifindex");
        let mut text = String::new();
        let sys = host::read_to(&self.path, &mut text)
            .ok()
            .and_then(|()| text.trim().parse::<u32>().ok());
        (sys, watch.index_of(iface))
    }

    fn gather_sync(&mut self, acc: &mut Accumulator) {
        self.generation += 1;
        // Before /proc/net/dev is read: a link changed after this is seen next gather.
        if self.links.as_ref().is_some_and(|w| w.changed()) {
            self.kept.clear();
        }
        self.gather_interfaces(acc);
        let g = self.generation;
        self.kept.retain(|_, k| k.seen == g);
        if let Some(e) = self.open_error.take() {
            acc.add_error(e);
        }
        if !self.ignore_protocol_stats {
            self.protocols(acc);
        }
    }

    fn gather_interfaces(&mut self, acc: &mut Accumulator) {
        match self.dev.read_or_err(&mut self.buf) {
            Err(e) => acc.add_error(e),
            Ok(()) => {
                let text = std::mem::take(&mut self.buf);
                // Two header lines, then "  name: rx… tx…".
                for line in text.lines().skip(2) {
                    self.interface(acc, line);
                }
                self.buf = text;
            }
        }
    }

    fn interface(&mut self, acc: &mut Accumulator, line: &str) {
        let Some((name, rest)) = line.rsplit_once(':') else {
            acc.add_error(format!(
                "{}: malformed line {line:?}",
                self.dev.path().display()
            ));
            return;
        };
        let name = name.trim();
        if !self.interfaces.is_empty() {
            if !host::glob_match(&self.interfaces, name) {
                return;
            }
        } else {
            // Telegraf skips interfaces it cannot see, loopback and interfaces that are down.
            let flags = self
                .read_attr(name, Attr::Flags)
                .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
            match flags {
                Some(f) if f & IFF_LOOPBACK == 0 && f & IFF_UP != 0 => {}
                _ => return,
            }
        }
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, s) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
            match s.parse() {
                Ok(x) => *slot = x,
                Err(_) => break,
            }
            n += 1;
        }
        if n < 12 {
            acc.add_error(format!(
                "{}: malformed line {line:?}",
                self.dev.path().display()
            ));
            return;
        }
        let speed = self
            .read_attr(name, Attr::Speed)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(-1);
        let mut m = metric(acc, "net", ValueType::Counter, 9);
        m.tags.push(("interface".into(), name.into()));
        push(&mut m, "bytes_sent", v[8]);
        push(&mut m, "bytes_recv", v[0]);
        push(&mut m, "packets_sent", v[9]);
        push(&mut m, "packets_recv", v[1]);
        push(&mut m, "err_in", v[2]);
        push(&mut m, "err_out", v[10]);
        push(&mut m, "drop_in", v[3]);
        push(&mut m, "drop_out", v[11]);
        push(&mut m, "speed", speed);
        acc.add(m);
    }

    /// /proc/net/snmp: pairs of "Proto: Name1 Name2 …" / "Proto: v1 v2 …" lines, reported as
    /// lower-cased `proto_name` integer fields.
    fn protocols(&mut self, acc: &mut Accumulator) {
        if let Err(e) = self.snmp.read_or_err(&mut self.buf) {
            acc.add_error(e);
            return;
        }
        let mut m = metric(acc, "net", ValueType::Untyped, 128);
        m.tags.push(("interface".into(), "all".into()));
        let mut lines = self.buf.lines();
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            let (Some((proto, names)), Some((vproto, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                acc.add_error(format!("{}: malformed section", self.snmp.path().display()));
                return;
            };
            if proto != vproto {
                acc.add_error(format!(
                    "{}: section {proto} is not followed by its values",
                    self.snmp.path().display()
                ));
                return;
            }
            if !PROTOCOLS.contains(&proto) {
                continue;
            }
            if names.split_ascii_whitespace().count() != values.split_ascii_whitespace().count() {
                acc.add_error(format!(
                    "{}: {proto}: header and values differ in length",
                    self.snmp.path().display()
                ));
                continue;
            }
            let start = m.fields.len();
            for (name, value) in names
                .split_ascii_whitespace()
                .zip(values.split_ascii_whitespace())
            {
                let Ok(value) = value.parse::<i64>() else {
                    acc.add_error(format!(
                        "{}: {proto} {name}: bad value {value:?}",
                        self.snmp.path().display()
                    ));
                    m.fields.truncate(start);
                    break;
                };
                let mut key = Str::with_capacity(proto.len() + 1 + name.len());
                key.extend(proto.chars().map(|c| c.to_ascii_lowercase()));
                key.push('_');
                key.extend(name.chars().map(|c| c.to_ascii_lowercase()));
                push(&mut m, key, value);
            }
        }
        acc.add(m);
    }
}

#[async_trait]
impl Input for Net {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.gather_sync(acc);
        Ok(())
    }
}

fn build(table: toml::Table, _ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let net =
        Net::new(cfg, &HostPaths::from_env()).map_err(|e| host::config_error("interfaces", e))?;
    Ok(InputPlugin::Polled(Box::new(net)))
}

pub const SPEC: InputSpec = InputSpec {
    name: "net",
    description: "Network interface traffic and protocol counters (Telegraf's net)",
    sample: include_str!("sample.toml"),
    format: Format::None,
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::host::fixture;
    use crate::model::FieldValue;

    fn gather(cfg: Config, paths: &HostPaths) -> Accumulator {
        let mut n = Net::new(cfg, paths).unwrap();
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        acc
    }

    #[test]
    fn default_skips_loopback_and_down_interfaces() {
        let acc = gather(Config::default(), &fixture("modern"));
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        let names: Vec<_> = acc
            .metrics
            .iter()
            .map(|m| m.tag("interface").unwrap())
            .collect();
        // lo is loopback, eth1 is down, docker0 has no sysfs entry.
        assert_eq!(names, ["eth0", "all"]);
        let eth0 = &acc.metrics[0];
        assert_eq!(eth0.field("bytes_recv"), Some(&FieldValue::UInt(1000)));
        assert_eq!(eth0.field("packets_recv"), Some(&FieldValue::UInt(10)));
        assert_eq!(eth0.field("drop_in"), Some(&FieldValue::UInt(2)));
        assert_eq!(eth0.field("bytes_sent"), Some(&FieldValue::UInt(2000)));
        assert_eq!(eth0.field("err_out"), Some(&FieldValue::UInt(3)));
        assert_eq!(eth0.field("drop_out"), Some(&FieldValue::UInt(4)));
        assert_eq!(eth0.field("speed"), Some(&FieldValue::Int(1000)));
        let all = &acc.metrics[1];
        assert_eq!(all.field("tcp_maxconn"), Some(&FieldValue::Int(-1)));
        assert_eq!(all.field("ip_forwarding"), Some(&FieldValue::Int(2)));
        assert_eq!(all.field("icmpmsg_intype3"), Some(&FieldValue::Int(11)));
        assert_eq!(all.field("udplite_indatagrams"), Some(&FieldValue::Int(0)));
        assert!(all.fields.iter().all(|(k, _)| !k.starts_with("future")));
    }

    #[test]
    fn explicit_globs_include_loopback_and_down() {
        let cfg = Config {
            interfaces: vec!["lo".into(), "eth*".into()],
            ignore_protocol_stats: true,
        };
        let acc = gather(cfg, &fixture("modern"));
        let names: Vec<_> = acc
            .metrics
            .iter()
            .map(|m| m.tag("interface").unwrap())
            .collect();
        assert_eq!(names, ["lo", "eth0", "eth1"]);
        // eth1 has no speed attribute.
        assert_eq!(acc.metrics[2].field("speed"), Some(&FieldValue::Int(-1)));
    }

    #[test]
    fn old_kernel_format_and_mismatched_snmp() {
        let cfg = Config {
            interfaces: vec!["*".into()],
            ignore_protocol_stats: false,
        };
        let acc = gather(cfg, &fixture("old"));
        // eth0 glued to its counters ("eth0:123"), and an Ip section whose lengths differ.
        assert_eq!(acc.errors.len(), 1, "{:?}", acc.errors);
        assert_eq!(acc.metrics[1].tag("interface"), Some("eth0"));
        assert_eq!(
            acc.metrics[1].field("bytes_recv"),
            Some(&FieldValue::UInt(123))
        );
        assert_eq!(
            acc.metrics[1].field("bytes_sent"),
            Some(&FieldValue::UInt(456))
        );
        let all = acc.metrics.last().unwrap();
        assert!(all.field("ip_forwarding").is_none());
        assert_eq!(all.field("tcp_activeopens"), Some(&FieldValue::Int(5)));
    }

    #[test]
    fn bad_glob_is_a_config_error() {
        let cfg = Config {
            interfaces: vec!["[".into()],
            ignore_protocol_stats: false,
        };
        assert!(Net::new(cfg, &fixture("modern")).is_err());
    }

    #[test]
    fn real_loopback_counters_move_with_traffic() {
        let cfg = Config {
            interfaces: vec!["lo".into()],
            ignore_protocol_stats: true,
        };
        let mut n = Net::new(cfg, &HostPaths::default()).unwrap();
        let sent = |n: &mut Net| {
            let mut acc = Accumulator::new(1);
            n.gather_sync(&mut acc);
            match acc.metrics[0].field("bytes_sent") {
                Some(FieldValue::UInt(v)) => *v,
                _ => panic!(),
            }
        };
        let before = sent(&mut n);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sock.local_addr().unwrap();
        for _ in 0..10 {
            sock.send_to(&[0u8; 1000], to).unwrap();
        }
        assert!(sent(&mut n) >= before + 10_000);
    }

    /// The interface names a default gather reports (up, not loopback).
    fn reported(n: &mut Net) -> Vec<String> {
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        acc.metrics
            .iter()
            .map(|m| m.tag("interface").unwrap().to_string())
            .collect()
    }

    /// A shell in a network and mount namespace of its own (root only, as CI runs), with a
    /// fresh /sys and a veth pair a0 (up) / b0 (down), then running `script` with the lines we
    /// write to it. Returns it with its output lines (the first, "ready", already read) and
    /// the `HostPaths` of its /proc and /sys.
    struct Netns {
        child: std::process::Child,
        lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
        stdin: std::process::ChildStdin,
        paths: HostPaths,
    }

    impl Netns {
        fn start(script: &str) -> Netns {
            use std::io::{BufRead, BufReader};
            use std::process::{Command, Stdio};
            let script = format!(
                "mount -t sysfs sysfs /sys && ip link add a0 type veth peer name b0 \
                 && ip link set a0 up && echo ready && {script}"
            );
            let mut child = Command::new("unshare")
                .args(["--net", "--mount", "sh", "-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("unshare");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let stdin = child.stdin.take().unwrap();
            assert_eq!(lines.next().unwrap().unwrap(), "ready");
            let pid = child.id();
            let paths = HostPaths {
                proc: format!("/proc/{pid}").into(),
                sys: format!("/proc/{pid}/root/sys").into(),
                ..HostPaths::default()
            };
            Netns {
                child,
                lines,
                stdin,
                paths,
            }
        }

        /// Writes `line` and waits for the script to print `reply`.
        fn tell(&mut self, line: &str, reply: &str) {
            use std::io::Write;
            writeln!(self.stdin, "{line}").unwrap();
            assert_eq!(self.lines.next().unwrap().unwrap(), reply);
        }

        /// A link watch on the namespace.
        fn watch(&self) -> links::LinkWatch {
            let pid = self.child.id();
            std::thread::spawn(move || {
                use std::os::fd::AsRawFd;
                let ns = File::open(format!("/proc/{pid}/ns/net")).unwrap();
                // SAFETY: moves only this thread, which ends here, into the child's namespace.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0);
                links::LinkWatch::open().unwrap()
            })
            .join()
            .unwrap()
        }

        fn index(&self, iface: &str) -> u32 {
            let path = self.paths.sys(&format!("class/net/{iface}/ifindex"));
            std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        }

        fn finish(mut self, line: &str) {
            use std::io::Write;
            writeln!(self.stdin, "{line}").unwrap();
            assert!(self.child.wait().unwrap().success());
        }
    }

    fn default_cfg() -> Config {
        Config {
            interfaces: vec![],
            ignore_protocol_stats: true,
        }
    }

    #[test]
    fn kept_files_do_not_follow_a_renamed_interface() {
        // On a line from us, a0 is renamed a9 and b0 (down) takes the name a0.
        let mut ns = Netns::start(
            "read _ && ip link set a0 down && ip link set a0 name a9 && ip link set a9 up \
             && ip link set b0 name a0 && echo renamed && read _",
        );
        let mut n = Net::with_links(default_cfg(), &ns.paths, Some(ns.watch())).unwrap();
        assert_eq!(reported(&mut n), ["a0"]);
        assert!(n.kept.contains_key("a0") && n.kept.contains_key("b0"));
        assert!(!n.links.as_ref().unwrap().changed());

        ns.tell("", "renamed");
        // "a0" is now the old b0, which is down; the old a0's kept file would say up.
        assert_eq!(reported(&mut n), ["a9"]);
        ns.finish("");
    }

    #[test]
    fn a_sys_of_another_namespace_than_the_watch_turns_keeping_off() {
        // An interface of this process's namespace, other than lo, and its index here.
        let here = links::LinkWatch::open().unwrap();
        let (name, index) = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !["lo", "a0", "b0"].contains(&n.as_str()))
            .find_map(|n| here.index_of(&n).map(|i| (n, i)))
            .expect("an interface besides lo");
        // The namespace gets an interface of that name with another index.
        let mut ns =
            Netns::start("read v h && ip link set \"$v\" name \"$h\" && echo renamed && read _");
        let victim = if ns.index("a0") != index { "a0" } else { "b0" };
        ns.tell(&format!("{victim} {name}"), "renamed");
        let mut n = Net::with_links(default_cfg(), &ns.paths, Some(here)).unwrap();
        let mut acc = Accumulator::new(1);
        n.gather_sync(&mut acc);
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert!(
            n.links.is_none(),
            "kept files of another namespace's interfaces"
        );
        assert!(n.kept.is_empty());
        // Read by path, the gather still reports what that /sys says.
        let names: Vec<_> = acc
            .metrics
            .iter()
            .filter_map(|m| m.tag("interface"))
            .collect();
        let want = if victim == "a0" {
            vec![name.as_str()]
        } else {
            vec!["a0"]
        };
        assert_eq!(names, want);
        ns.finish("");
    }
}
