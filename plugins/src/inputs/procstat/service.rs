//! Service-level finders, as Telegraf's procstat does them on Linux: systemd units through
//! `systemctl` (`show` for `MainPID`, `list-unit-files` for the filter blocks' patterns) or the
//! unit's cgroup, and supervisord programs through `supervisorctl status`.

use std::collections::BTreeMap;

/// Runs a command; its stdout, or an error naming it. `ok_codes` are exit codes that still
/// count as an answer (supervisorctl exits 3 when a program is not running).
pub async fn run(program: &str, args: &[&str], ok_codes: &[i32]) -> anyhow::Result<String> {
    run_quiet(program, args, ok_codes, false).await
}

/// As `run`; with `silent_1`, exit code 1 with no output at all is an empty answer
/// (`systemctl list-unit-files` when no unit file matches).
async fn run_quiet(
    program: &str,
    args: &[&str],
    ok_codes: &[i32],
    silent_1: bool,
) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("failed to execute {program:?}: {e}"))?;
    if silent_1
        && out.status.code() == Some(1)
        && out.stdout.trim_ascii().is_empty()
        && out.stderr.trim_ascii().is_empty()
    {
        return Ok(String::new());
    }
    if !out.status.success() && !out.status.code().is_some_and(|c| ok_codes.contains(&c)) {
        let err = String::from_utf8_lossy(&out.stderr);
        let msg = if err.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            err.trim().to_string()
        };
        anyhow::bail!(
            "{program} {} failed ({}): {msg}",
            args.join(" "),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `systemctl show` output: `Key=Value` lines, one block per unit separated by blank lines.
/// Lines without `=` are skipped.
pub fn parse_systemctl_show(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut units = Vec::new();
    let mut cur = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                units.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            cur.insert(k.to_string(), v.to_string());
        }
    }
    if !cur.is_empty() {
        units.push(cur);
    }
    units
}

/// A unit's `MainPID`: None when it has none (0 or empty: not running); an error when the
/// value is not a pid.
pub fn main_pid(props: &BTreeMap<String, String>) -> anyhow::Result<Option<i32>> {
    match props.get("MainPID").map(|s| s.trim()) {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("invalid pid {v:?}")),
    }
}

/// The unit names of `systemctl list-unit-files --no-legend` (first column); the header and
/// the "N unit files listed." footer, when present, are skipped, and so are templates
/// (`name@.service`: not a unit with a process; `systemctl show` refuses them).
pub fn parse_list_unit_files(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let name = l.split_ascii_whitespace().next()?;
            (name != "UNIT"
                && name.contains('.')
                && !name.contains("@.")
                && l.split_ascii_whitespace().count() >= 2)
                .then(|| name.to_string())
        })
        .collect()
}

/// The pid of the systemd unit's main process (Telegraf: `systemctl show UNIT`, `MainPID`).
pub async fn systemd_main_pid(unit: &str) -> anyhow::Result<Option<i32>> {
    let text = run("systemctl", &["show", unit], &[]).await?;
    match parse_systemctl_show(&text).first() {
        Some(props) => main_pid(props),
        None => Ok(None),
    }
}

/// The filter blocks' `systemd_units`: unit files matching the patterns in the states
/// enabled, disabled or static (Telegraf asks D-Bus' ListUnitFilesByPatterns the same), then
/// each unit's `MainPID`. Units that have no `MainPID` property (not services) are left out;
/// units that are not running have no pid.
pub async fn systemd_units(patterns: &[String]) -> anyhow::Result<Vec<(String, Option<i32>)>> {
    let mut args = vec![
        "list-unit-files",
        "--no-legend",
        "--no-pager",
        "--state=enabled,disabled,static",
        "--",
    ];
    args.extend(patterns.iter().map(String::as_str));
    // systemd exits 1, silently, when no unit file matches.
    let units = parse_list_unit_files(&run_quiet("systemctl", &args, &[], true).await?);
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["show", "--property=Id,MainPID", "--"];
    args.extend(units.iter().map(String::as_str));
    let text = run("systemctl", &args, &[]).await?;
    let mut out = Vec::new();
    for (i, props) in parse_systemctl_show(&text).iter().enumerate() {
        if !props.contains_key("MainPID") {
            continue;
        }
        let name = props
            .get("Id")
            .cloned()
            .or_else(|| units.get(i).cloned())
            .unwrap_or_default();
        let pid = main_pid(props).map_err(|e| anyhow::anyhow!("unit {name:?}: {e}"))?;
        out.push((name, pid));
    }
    Ok(out)
}

/// One line of `supervisorctl status`.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorUnit {
    pub name: String,
    pub status: String,
    /// RUNNING: the program's pid and uptime ("pid 11779, uptime 17:41:16").
    pub pid: Option<i32>,
    pub uptime: Option<String>,
    /// FATAL, EXITED, BACKOFF, STOPPING: the rest of the line.
    pub error: Option<String>,
}

impl SupervisorUnit {
    /// Telegraf's tags of a unit's processes.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut t = vec![
            ("supervisor_unit", self.name.clone()),
            ("status", self.status.clone()),
        ];
        if let Some(u) = &self.uptime {
            t.push(("uptimes", u.clone()));
        }
        if let Some(e) = self.error.as_ref().filter(|e| !e.is_empty()) {
            t.push(("error", e.clone()));
        }
        t
    }
}

/// `supervisorctl status` output, one unit per line: `name STATE details`. Lines with fewer
/// than two words are skipped; a RUNNING line without a readable pid is an error.
pub fn parse_supervisorctl_status(text: &str) -> anyhow::Result<Vec<SupervisorUnit>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let kv: Vec<&str> = line.split_ascii_whitespace().collect();
        if kv.len() < 2 {
            continue;
        }
        let mut u = SupervisorUnit {
            name: kv[0].to_string(),
            status: kv[1].to_string(),
            pid: None,
            uptime: None,
            error: None,
        };
        match kv[1] {
            "FATAL" | "EXITED" | "BACKOFF" | "STOPPING" => u.error = Some(kv[2..].join(" ")),
            "RUNNING" => {
                // RUNNING   pid 11779, uptime 17:41:16
                let raw = kv.get(3).map(|p| p.trim_end_matches(','));
                u.pid = Some(
                    raw.and_then(|p| p.parse().ok())
                        .ok_or_else(|| anyhow::anyhow!("failed to parse group PID in {line:?}"))?,
                );
                u.uptime = kv.get(5).map(|s| s.to_string());
            }
            _ => {}
        }
        out.push(u);
    }
    Ok(out)
}

/// `supervisorctl status UNIT...` (exit code 3: some program is not running, still an answer).
pub async fn supervisor_units(units: &[String]) -> anyhow::Result<Vec<SupervisorUnit>> {
    let mut args = vec!["status"];
    args.extend(units.iter().map(String::as_str));
    let text = run("supervisorctl", &args, &[3]).await?;
    parse_supervisorctl_status(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_blocks() {
        let text = "Type=simple\nMainPID=4242\nControlGroup=/system.slice/a.service\n\
                    ExecStart={ path=/bin/a ; argv[]=/bin/a -x=1 }\n\nId=b.service\nMainPID=0\n";
        let units = parse_systemctl_show(text);
        assert_eq!(units.len(), 2);
        assert_eq!(main_pid(&units[0]).unwrap(), Some(4242));
        assert_eq!(
            units[0]["ExecStart"],
            "{ path=/bin/a ; argv[]=/bin/a -x=1 }"
        );
        assert_eq!(units[1]["Id"], "b.service");
        assert_eq!(main_pid(&units[1]).unwrap(), None);
        let mut bad = BTreeMap::new();
        bad.insert("MainPID".to_string(), "abc".to_string());
        assert!(main_pid(&bad).is_err());
        bad.insert("MainPID".to_string(), String::new());
        assert_eq!(main_pid(&bad).unwrap(), None);
        assert!(parse_systemctl_show("").is_empty());
    }

    #[test]
    fn list_unit_files() {
        let text = "UNIT FILE STATE PRESET\nnginx.service enabled enabled\n\
                    nginx@.service static -\n\
                    nginx-debug.service disabled enabled\n\
                    nginx.timer enabled enabled\n\n4 unit files listed.\n";
        assert_eq!(
            parse_list_unit_files(text),
            vec!["nginx.service", "nginx-debug.service", "nginx.timer"]
        );
        assert!(parse_list_unit_files("0 unit files listed.\n").is_empty());
    }

    #[test]
    fn supervisorctl_status_lines() {
        let text = "web                              RUNNING   pid 11779, uptime 17:41:16\n\
                    proxy                            FATAL     Exited too quickly (process log may have details)\n\
                    idle                             STOPPED   Dec 01 11:00 PM\n\
                    nope: ERROR (no such process)\n\
                    \n\
                    x\n";
        let u = parse_supervisorctl_status(text).unwrap();
        assert_eq!(u.len(), 4);
        assert_eq!(
            u[0],
            SupervisorUnit {
                name: "web".into(),
                status: "RUNNING".into(),
                pid: Some(11779),
                uptime: Some("17:41:16".into()),
                error: None,
            }
        );
        assert_eq!(
            u[0].tags(),
            vec![
                ("supervisor_unit", "web".to_string()),
                ("status", "RUNNING".to_string()),
                ("uptimes", "17:41:16".to_string())
            ]
        );
        assert_eq!(
            u[1].error.as_deref(),
            Some("Exited too quickly (process log may have details)")
        );
        assert_eq!((u[2].pid, u[2].error.as_ref()), (None, None));
        assert_eq!(u[3].name, "nope:");
        assert!(parse_supervisorctl_status("a RUNNING pid x, uptime 1").is_err());
        assert!(parse_supervisorctl_status("a RUNNING").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = parse_supervisorctl_status(&s);
            for u in parse_systemctl_show(&s) {
                let _ = main_pid(&u);
            }
            let _ = parse_list_unit_files(&s);
        }
    }
}
