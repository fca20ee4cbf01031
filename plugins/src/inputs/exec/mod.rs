//! `inputs.exec`: runs commands and parses what they print in the `data_format`.
//!
//! Each command line is split shell-like (quotes respected, no shell is involved); a glob in
//! the program path runs every matching program. Commands run concurrently; a command that
//! exits non-zero or outruns `timeout` is killed (with its process group) and reported as a
//! gather error carrying the start of its stderr.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::codec::Parser;
use crate::config_types;
use crate::plugin::{Accumulator, BuildContext, Input, InputPlugin};
use crate::registry::{BuildError, ConfigError, Format, InputSpec, parse_config};

/// How much of a failing command's stderr goes into the error.
const MAX_STDERR: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    commands: Vec<String>,
    timeout: config_types::Duration,
    environment: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            commands: Vec::new(),
            timeout: config_types::Duration::from_secs(5),
            environment: Vec::new(),
        }
    }
}

pub struct Exec {
    /// Each command split into program and arguments.
    commands: Vec<Vec<String>>,
    timeout: Duration,
    environment: Arc<Vec<(String, String)>>,
    parser: Arc<dyn Parser>,
}

/// What one run of a command produced.
struct Run {
    /// The command line, for errors.
    line: String,
    result: Result<Vec<u8>, String>,
}

#[async_trait]
impl Input for Exec {
    async fn gather(&mut self, acc: &mut Accumulator) -> anyhow::Result<()> {
        let mut tasks = Vec::new();
        for argv in &self.commands {
            for argv in expand_glob(argv) {
                let env = self.environment.clone();
                let timeout = self.timeout;
                tasks.push(tokio::spawn(run(argv, env, timeout)));
            }
        }
        // Awaited in config order so that metrics come out in a stable order.
        for task in tasks {
            let run = match task.await {
                Ok(run) => run,
                Err(e) => {
                    acc.add_error(format!("exec: command task failed: {e}"));
                    continue;
                }
            };
            match run.result {
                Ok(stdout) => {
                    let mut metrics = Vec::new();
                    for e in self.parser.parse(&stdout, acc.time(), &mut metrics) {
                        acc.add_error(format!("exec: command {:?}: output {e}", run.line));
                    }
                    for m in metrics {
                        acc.add(m);
                    }
                }
                Err(e) => acc.add_error(format!("exec: command {:?}: {e}", run.line)),
            }
        }
        Ok(())
    }
}

/// A program path with glob characters runs every match (Telegraf's behaviour); with no match
/// the command is run as written, so a program found on `PATH` still works.
fn expand_glob(argv: &[String]) -> Vec<Vec<String>> {
    let prog = &argv[0];
    if prog.contains(['*', '?', '['])
        && let Ok(paths) = glob::glob(prog)
    {
        let mut out: Vec<Vec<String>> = paths
            .filter_map(Result::ok)
            .map(|p| {
                let mut v = argv.to_vec();
                v[0] = p.to_string_lossy().into_owned();
                v
            })
            .collect();
        if !out.is_empty() {
            out.sort();
            return out;
        }
    }
    vec![argv.to_vec()]
}

async fn run(argv: Vec<String>, env: Arc<Vec<(String, String)>>, timeout: Duration) -> Run {
    let line = argv.join(" ");
    let result = run_inner(&argv, &env, timeout).await;
    Run { line, result }
}

async fn run_inner(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // Its own process group, so a timeout also kills what a script started.
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let done = tokio::time::timeout(timeout, async {
        let (status, _, _) = tokio::join!(
            child.wait(),
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err)
        );
        status
    })
    .await;
    match done {
        Err(_) => {
            #[cfg(unix)]
            if let Some(pid) = pid {
                // SAFETY: kill(2) with a negative pid signals that process group; the group
                // leader is our child, not yet reaped, so the id cannot have been reused.
                unsafe {
                    libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                }
            }
            let _ = child.kill().await;
            Err(format!(
                "timed out after {timeout:?}{}",
                stderr_suffix(&err)
            ))
        }
        Ok(Err(e)) => Err(format!("waiting for it: {e}")),
        Ok(Ok(status)) if !status.success() => Err(format!("{status}{}", stderr_suffix(&err))),
        Ok(Ok(_)) => Ok(out),
    }
}

/// `: <start of stderr>` or nothing when stderr was empty.
fn stderr_suffix(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(&err[..err.len().min(MAX_STDERR)]);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let more = if err.len() > MAX_STDERR { "..." } else { "" };
    format!("; stderr: {text}{more}")
}

/// Splits a command line into words the way a POSIX shell would, without expanding anything:
/// whitespace separates words, '...' is literal, "..." allows \" \\ \$ \` escapes, and a
/// backslash outside quotes escapes the next character.
fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn build(table: toml::Table, ctx: &BuildContext) -> Result<InputPlugin, BuildError> {
    let cfg: Config = parse_config(table)?;
    let bad =
        |path: Vec<String>, message: String| BuildError::Config(ConfigError { path, message });
    let mut commands = Vec::new();
    for (i, line) in cfg.commands.iter().enumerate() {
        let at = || vec!["commands".to_string(), i.to_string()];
        let argv = split_command(line).map_err(|e| bad(at(), format!("{e} in {line:?}")))?;
        if argv.is_empty() {
            return Err(bad(at(), "empty command".into()));
        }
        commands.push(argv);
    }
    let mut environment = Vec::new();
    for (i, kv) in cfg.environment.iter().enumerate() {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(bad(
                vec!["environment".into(), i.to_string()],
                format!("expected \"KEY=value\", got {kv:?}"),
            ));
        };
        environment.push((k.to_string(), v.to_string()));
    }
    if cfg.timeout.is_zero() {
        return Err(bad(
            vec!["timeout".into()],
            "timeout must be above zero".into(),
        ));
    }
    let parser = ctx
        .parser
        .clone()
        .ok_or_else(|| anyhow::anyhow!("exec: no data_format parser was given"))?;
    Ok(InputPlugin::Polled(Box::new(Exec {
        commands,
        timeout: cfg.timeout.get(),
        environment: Arc::new(environment),
        parser,
    })))
}

pub const SPEC: InputSpec = InputSpec {
    name: "exec",
    description: "Run commands and parse their output in a data_format",
    sample: include_str!("sample.toml"),
    // Telegraf's legacy default for exec alone: without data_format the output is JSON.
    format: Format::Parser("json"),
    build,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ParseError;
    use crate::model::Metric;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// Test-only parser: each line `name value` becomes `name value=<int>`; anything else is
    /// an error for that line.
    struct Words;
    impl Parser for Words {
        fn parse(&self, input: &[u8], now: i64, out: &mut Vec<Metric>) -> Vec<ParseError> {
            let mut errs = Vec::new();
            for (i, line) in String::from_utf8_lossy(input).lines().enumerate() {
                match line.split_once(' ').map(|(n, v)| (n, v.parse::<i64>())) {
                    Some((n, Ok(v))) => out.push(Metric::new(n, now).with_field("value", v)),
                    _ => errs.push(ParseError {
                        line: i + 1,
                        message: format!("bad line {line:?}"),
                    }),
                }
            }
            errs
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sonde-exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn exec(toml_text: &str) -> Result<Box<dyn Input>, BuildError> {
        let ctx = BuildContext {
            parser: Some(Arc::new(Words)),
            ..Default::default()
        };
        match build(toml::from_str(toml_text).unwrap(), &ctx)? {
            InputPlugin::Polled(p) => Ok(p),
            InputPlugin::Service(_) => panic!("exec is polled"),
        }
    }

    async fn gather(input: &mut Box<dyn Input>) -> Accumulator {
        let mut acc = Accumulator::new(7);
        input.gather(&mut acc).await.unwrap();
        acc
    }

    fn names(acc: &Accumulator) -> Vec<String> {
        acc.metrics
            .iter()
            .map(|m| format!("{} {:?}", m.name, m.field("value")))
            .collect()
    }

    #[test]
    fn splits_like_a_shell() {
        let got = split_command(r#"/bin/echo  'a b' "c \"d\" \$x" e\ f g"h"'i'"#).unwrap();
        assert_eq!(got, ["/bin/echo", "a b", "c \"d\" $x", "e f", "ghi"]);
        assert_eq!(split_command(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert!(split_command("a 'b").is_err());
        assert!(split_command("a \"b").is_err());
        assert!(split_command("").unwrap().is_empty());
    }

    #[tokio::test]
    async fn runs_commands_with_args_and_environment() {
        let dir = temp_dir("args");
        let s = script(&dir, "two.sh", "echo \"$1 $2\"\necho \"env $SONDE_X\"");
        let mut input = exec(&format!(
            "commands = ['{s} \"first\" 2']\nenvironment = [\"SONDE_X=41\"]"
        ))
        .unwrap();
        let acc = gather(&mut input).await;
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(names(&acc), ["first Some(Int(2))", "env Some(Int(41))"]);
        assert_eq!(acc.metrics[0].time, 7);
    }

    #[tokio::test]
    async fn glob_runs_every_match_in_order() {
        let dir = temp_dir("glob");
        script(&dir, "a.sh", "echo a 1");
        script(&dir, "b.sh", "echo b 2");
        let mut input = exec(&format!("commands = ['{}/*.sh']", dir.display())).unwrap();
        let acc = gather(&mut input).await;
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(names(&acc), ["a Some(Int(1))", "b Some(Int(2))"]);
    }

    #[tokio::test]
    async fn failure_reports_status_and_stderr_and_others_still_run() {
        let dir = temp_dir("fail");
        let bad = script(
            &dir,
            "bad.sh",
            "echo x 1\necho 'database is down' >&2\nexit 3",
        );
        let good = script(&dir, "good.sh", "echo ok 1");
        let mut input = exec(&format!("commands = ['{bad}', '{good}']")).unwrap();
        let acc = gather(&mut input).await;
        assert_eq!(names(&acc), ["ok Some(Int(1))"]);
        assert_eq!(acc.errors.len(), 1);
        let e = &acc.errors[0];
        assert!(e.contains("bad.sh"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("database is down"), "{e}");
    }

    #[tokio::test]
    async fn long_stderr_is_truncated() {
        let dir = temp_dir("long");
        let s = script(
            &dir,
            "noisy.sh",
            "head -c 5000 /dev/zero | tr '\\0' x >&2\nexit 1",
        );
        let mut input = exec(&format!("commands = ['{s}']")).unwrap();
        let acc = gather(&mut input).await;
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.errors[0].len() < 1000, "{}", acc.errors[0].len());
        assert!(acc.errors[0].ends_with("..."));
    }

    #[tokio::test]
    async fn timeout_kills_the_command_and_its_children() {
        let dir = temp_dir("timeout");
        let marker = dir.join("survived");
        let s = script(
            &dir,
            "slow.sh",
            &format!(
                "echo started >&2\n(sleep 1; touch {}) &\nsleep 30",
                marker.display()
            ),
        );
        let mut input = exec(&format!("commands = ['{s}']\ntimeout = \"300ms\"")).unwrap();
        let t0 = std::time::Instant::now();
        let acc = gather(&mut input).await;
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(acc.metrics.is_empty());
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.errors[0].contains("timed out"), "{}", acc.errors[0]);
        assert!(acc.errors[0].contains("started"), "{}", acc.errors[0]);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "the script's background child was not killed"
        );
    }

    #[tokio::test]
    async fn parse_errors_keep_good_lines() {
        let dir = temp_dir("parse");
        let s = script(&dir, "mixed.sh", "echo a 1\necho garbage\necho b 2");
        let mut input = exec(&format!("commands = ['{s}']")).unwrap();
        let acc = gather(&mut input).await;
        assert_eq!(names(&acc), ["a Some(Int(1))", "b Some(Int(2))"]);
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.errors[0].contains("line 2"), "{}", acc.errors[0]);
    }

    #[tokio::test]
    async fn line_protocol_output_with_a_bad_line() {
        let dir = temp_dir("influx");
        let s = script(
            &dir,
            "lp.sh",
            "echo 'scenario,name=login ok=true,ms=12.5'\necho 'not line protocol'\necho 'scenario ms=3i 5'",
        );
        let ctx = BuildContext {
            parser: Some(crate::codec::build_parser(&Default::default(), "influx").unwrap()),
            ..Default::default()
        };
        let table = toml::from_str(&format!("commands = ['{s}']")).unwrap();
        let InputPlugin::Polled(mut input) = build(table, &ctx).unwrap() else {
            panic!("exec is polled");
        };
        let acc = gather(&mut input).await;
        let lines: Vec<String> = acc.metrics.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            lines,
            ["scenario,name=login ok=true,ms=12.5 7", "scenario ms=3i 5"]
        );
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.errors[0].contains("line 2"), "{}", acc.errors[0]);
    }

    #[tokio::test]
    async fn missing_program_is_an_error() {
        let mut input = exec("commands = ['/nonexistent/sonde-test-prog']").unwrap();
        let acc = gather(&mut input).await;
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.errors[0].contains("cannot start"), "{}", acc.errors[0]);
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = |t: &str| match exec(t) {
            Err(BuildError::Config(c)) => c.path,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted {t}"),
        };
        assert_eq!(err("commands = ['ok', 'a \"b']"), ["commands", "1"]);
        assert_eq!(err("commands = ['  ']"), ["commands", "0"]);
        assert_eq!(err("environment = ['NOEQUALS']"), ["environment", "0"]);
        assert_eq!(err("timeout = \"0s\""), ["timeout"]);
        assert_eq!(err("comands = []"), ["comands"]);
    }
}
