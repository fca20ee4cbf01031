//! `[[inputs.procstat.filter]]` blocks: Telegraf's new-style selection. A service level
//! (pid files, cgroups, systemd units or supervisord programs; all processes without one), then process properties (users,
//! executables, process names: globs; patterns: regular expressions on the command line), then
//! children down to `recursion_depth` (negative: all).

use std::path::Path;

use serde::Deserialize;

use super::{proc, service};
use crate::inputs::host::{compile_globs, config_error, glob_match};
use crate::registry::BuildError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    name: String,
    pid_files: Vec<String>,
    systemd_units: Vec<String>,
    supervisor_units: Vec<String>,
    /// Telegraf's sample.conf spells it `win_service`.
    #[serde(alias = "win_service")]
    win_services: Vec<String>,
    cgroups: Vec<String>,
    patterns: Vec<String>,
    users: Vec<String>,
    executables: Vec<String>,
    process_names: Vec<String>,
    recursion_depth: i64,
}

pub enum Service {
    All,
    PidFiles(Vec<String>),
    Cgroups(Vec<String>),
    SystemdUnits(Vec<String>),
    SupervisorUnits(Vec<String>),
}

pub struct Filter {
    pub name: String,
    service: Service,
    patterns: Vec<regex::Regex>,
    users: Vec<glob::Pattern>,
    executables: Vec<glob::Pattern>,
    process_names: Vec<glob::Pattern>,
    recursion_depth: i64,
}

/// Processes found together, with their tags and child level (0: matched directly).
pub struct Group {
    pub pids: Vec<i32>,
    pub tags: Vec<(&'static str, String)>,
    pub level: i64,
}

impl Filter {
    pub fn new(i: usize, c: FilterConfig) -> Result<Filter, BuildError> {
        let key = |k: &str| format!("filter.{i}.{k}");
        if c.name.is_empty() {
            return Err(config_error(&key("name"), "filter must be named".into()));
        }
        let active: Vec<&str> = [
            (!c.pid_files.is_empty(), "pid_files"),
            (!c.cgroups.is_empty(), "cgroups"),
            (!c.systemd_units.is_empty(), "systemd_units"),
            (!c.supervisor_units.is_empty(), "supervisor_units"),
            (!c.win_services.is_empty(), "win_services"),
        ]
        .into_iter()
        .filter_map(|(set, k)| set.then_some(k))
        .collect();
        if active.len() > 1 {
            return Err(config_error(
                &key(active[1]),
                format!("cannot select multiple services {:?}", active.join(", ")),
            ));
        }
        if !c.win_services.is_empty() {
            return Err(config_error(
                &key("win_services"),
                "Windows services are not supported on this OS".into(),
            ));
        }
        // Telegraf joins the names with spaces and trims: blank names select nothing.
        let supervisor: Vec<String> = c
            .supervisor_units
            .iter()
            .flat_map(|u| u.split_ascii_whitespace())
            .map(str::to_string)
            .collect();
        let service = if !c.pid_files.is_empty() {
            Service::PidFiles(c.pid_files)
        } else if !c.cgroups.is_empty() {
            Service::Cgroups(c.cgroups)
        } else if !c.systemd_units.is_empty() {
            Service::SystemdUnits(c.systemd_units)
        } else if !supervisor.is_empty() {
            Service::SupervisorUnits(supervisor)
        } else {
            Service::All
        };
        let globs =
            |k: &str, v: &[String]| compile_globs(k, v).map_err(|e| config_error(&key(k), e));
        Ok(Filter {
            service,
            patterns: c
                .patterns
                .iter()
                .map(|p| {
                    regex::Regex::new(p)
                        .map_err(|e| config_error(&key("patterns"), format!("{p:?}: {e}")))
                })
                .collect::<Result<_, _>>()?,
            users: globs("users", &c.users)?,
            executables: globs("executables", &c.executables)?,
            process_names: globs("process_names", &c.process_names)?,
            recursion_depth: c.recursion_depth,
            name: c.name,
        })
    }

    /// The groups this filter selects now.
    pub async fn apply(&self, root: &Path) -> anyhow::Result<Vec<Group>> {
        let mut groups = match &self.service {
            Service::All => vec![Group {
                pids: proc::pids(root)?,
                tags: Vec::new(),
                level: 0,
            }],
            Service::PidFiles(files) => files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f)
                        .map_err(|e| anyhow::anyhow!("failed to read pidfile {f:?}: {e}"))?;
                    let pid = text
                        .trim()
                        .parse()
                        .map_err(|e| anyhow::anyhow!("failed to parse PID in file {f:?}: {e}"))?;
                    Ok(Group {
                        pids: vec![pid],
                        tags: vec![("pidfile", f.clone())],
                        level: 0,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            Service::Cgroups(cgs) => {
                let mut out = Vec::new();
                for cg in cgs {
                    for (full, pids) in proc::cgroup_pids(cg)? {
                        out.push(Group {
                            pids,
                            tags: vec![("cgroup", cg.clone()), ("cgroup_full", full)],
                            level: 0,
                        });
                    }
                }
                out
            }
            Service::SystemdUnits(patterns) => service::systemd_units(patterns)
                .await?
                .into_iter()
                .map(|(name, pid)| Group {
                    pids: pid.into_iter().collect(),
                    tags: vec![("systemd_unit", name)],
                    level: 0,
                })
                .collect(),
            Service::SupervisorUnits(units) => {
                let units = service::supervisor_units(units).await?;
                let children = proc::children_map(root)?;
                units
                    .into_iter()
                    .map(|u| {
                        let mut tags = u.tags();
                        // The children of a running program's process, as in Telegraf.
                        let pids = match u.pid {
                            Some(main) => {
                                tags.push(("parent_pid", main.to_string()));
                                children.get(&main).cloned().unwrap_or_default()
                            }
                            None => Vec::new(),
                        };
                        Group {
                            pids,
                            tags,
                            level: 0,
                        }
                    })
                    .collect()
            }
        };
        for g in &mut groups {
            g.pids.retain(|pid| self.matches(root, *pid));
        }
        if self.recursion_depth != 0 {
            let children = proc::children_map(root)?;
            let mut previous: Vec<usize> = (0..groups.len()).collect();
            let mut depth = 0;
            while depth < self.recursion_depth || self.recursion_depth < 0 {
                let mut next = Vec::new();
                for gi in previous {
                    for pid in groups[gi].pids.clone() {
                        let Some(c) = children.get(&pid) else {
                            continue;
                        };
                        let mut tags = groups[gi].tags.clone();
                        tags.push(("parent_pid", pid.to_string()));
                        groups.push(Group {
                            pids: c.clone(),
                            tags,
                            level: depth + 1,
                        });
                        next.push(groups.len() - 1);
                    }
                }
                if next.is_empty() {
                    break;
                }
                previous = next;
                depth += 1;
            }
        }
        Ok(groups)
    }

    fn matches(&self, root: &Path, pid: i32) -> bool {
        let need_status = !self.users.is_empty() || !self.process_names.is_empty();
        let status = if need_status {
            match proc::status(root, pid) {
                Some(s) => Some(s),
                None => return false,
            }
        } else {
            None
        };
        if !self.users.is_empty() {
            let Some(uid) = status.as_ref().and_then(|s| s.uid) else {
                return false;
            };
            if !glob_match(&self.users, &proc::user_name(uid)) {
                return false;
            }
        }
        if !self.process_names.is_empty()
            && !glob_match(&self.process_names, &status.as_ref().unwrap().name)
        {
            return false;
        }
        if !self.executables.is_empty() {
            let Ok(exe) = std::fs::read_link(proc::dir(root, pid).join("exe")) else {
                return false;
            };
            if !glob_match(&self.executables, &exe.to_string_lossy()) {
                return false;
            }
        }
        if !self.patterns.is_empty() {
            let Some(cmd) = proc::cmdline(root, pid) else {
                return false;
            };
            if !self.patterns.iter().any(|re| re.is_match(&cmd)) {
                return false;
            }
        }
        true
    }
}
