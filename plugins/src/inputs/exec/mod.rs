//! `inputs.exec`: runs commands and parses what they print in the `data_format`.
//!
//! Each command is an array `["program", "arg", ...]` (Telegraf's current form, no splitting at
//! all) or a string split shell-like (quotes respected, no shell is involved); a glob in the
//! program path runs every matching program. Commands run concurrently. A command that exits
//! non-zero is a gather error carrying the start of its stderr and nothing it printed is parsed,
//! unless `ignore_error` is set (then its output is parsed as if it had succeeded, as Telegraf
//! does). A command that outruns `timeout` is killed with its process group and reported.
//! `log_stderr` logs each stderr line, at the level its `E!`/`W!`/`I!`/`D!`/`T!` prefix names.

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
    /// Each entry an array of program and arguments, or a string split shell-like.
    commands: Vec<toml::Value>,
    /// Telegraf's legacy single command, run after `commands`.
    command: Option<String>,
    timeout: config_types::Duration,
    environment: Vec<String>,
    ignore_error: bool,
    log_stderr: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            commands: Vec::new(),
            command: None,
            timeout: config_types::Duration::from_secs(5),
            environment: Vec::new(),
            ignore_error: false,
            log_stderr: false,
        }
    }
}

pub struct Exec {
    /// Each command split into program and arguments.
    commands: Vec<Vec<String>>,
    timeout: Duration,
    environment: Arc<Vec<(String, String)>>,
    parser: Arc<dyn Parser>,
    ignore_error: bool,
    log_stderr: bool,
    /// The plugin's alias or name, for the stderr log lines.
    id: String,
}

/// What one run of a command produced.
struct Run {
    /// The command line, for errors.
    line: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Why the run failed: a start failure, a timeout or a non-zero exit.
    failure: Option<Failure>,
}

enum Failure {
    /// It could not be started or waited for: there is no output at all.
    Start(String),
    TimedOut(Duration),
    Exit(std::process::ExitStatus),
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
            match &run.failure {
                None => {}
                Some(Failure::Start(e)) => {
                    acc.add_error(format!("exec: command {:?}: {e}", run.line));
                    continue;
                }
                // A timeout is reported even with ignore_error: it is not an exit code. What
                // the command printed before it was killed is still parsed when errors are
                // ignored.
                Some(Failure::TimedOut(t)) => {
                    acc.add_error(format!(
                        "exec: command {:?}: timed out after {t:?}{}",
                        run.line,
                        stderr_suffix(&run.stderr)
                    ));
                    if !self.ignore_error {
                        continue;
                    }
                }
                Some(Failure::Exit(status)) if !self.ignore_error => {
                    // As Telegraf: an error, and nothing of its output is parsed or logged.
                    acc.add_error(format!(
                        "exec: command {:?}: {status}{}",
                        run.line,
                        stderr_suffix(&run.stderr)
                    ));
                    continue;
                }
                Some(Failure::Exit(status)) => {
                    tracing::debug!(input = %self.id, command = %run.line, %status, "exec: non-zero exit ignored (ignore_error)");
                }
            }
            if self.log_stderr {
                log_stderr(&self.id, &run.line, &run.stderr);
            }
            let mut metrics = Vec::new();
            for e in self.parser.parse(&run.stdout, acc.time(), &mut metrics) {
                acc.add_error(format!("exec: command {:?}: output {e}", run.line));
            }
            for m in metrics {
                acc.add(m);
            }
        }
        Ok(())
    }
}

/// Logs each non-blank stderr line; a leading `E! `, `W! `, `I! `, `D! ` or `T! ` picks the
/// level (and is removed), anything else is logged as an error, as Telegraf does.
fn log_stderr(id: &str, command: &str, stderr: &[u8]) {
    for line in String::from_utf8_lossy(stderr).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let (level, msg) = match line.get(..3) {
            Some("E! ") => (tracing::Level::ERROR, &line[3..]),
            Some("W! ") => (tracing::Level::WARN, &line[3..]),
            Some("I! ") => (tracing::Level::INFO, &line[3..]),
            Some("D! ") => (tracing::Level::DEBUG, &line[3..]),
            Some("T! ") => (tracing::Level::TRACE, &line[3..]),
            _ => (tracing::Level::ERROR, line),
        };
        match level {
            tracing::Level::ERROR => tracing::error!(input = %id, command, "{msg}"),
            tracing::Level::WARN => tracing::warn!(input = %id, command, "{msg}"),
            tracing::Level::INFO => tracing::info!(input = %id, command, "{msg}"),
            tracing::Level::DEBUG => tracing::debug!(input = %id, command, "{msg}"),
            _ => tracing::trace!(input = %id, command, "{msg}"),
        }
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
    let mut run = Run {
        line,
        stdout: Vec::new(),
        stderr: Vec::new(),
        failure: None,
    };
    run.failure = run_inner(&argv, &env, timeout, &mut run.stdout, &mut run.stderr)
        .await
        .err();
    run
}

async fn run_inner(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) -> Result<(), Failure> {
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
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::Start(format!("cannot start: {e}")))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let done = tokio::time::timeout(timeout, async {
        let (status, _, _) = tokio::join!(
            child.wait(),
            stdout.read_to_end(out),
            stderr.read_to_end(err)
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
            Err(Failure::TimedOut(timeout))
        }
        Ok(Err(e)) => Err(Failure::Start(format!("waiting for it: {e}"))),
        Ok(Ok(status)) if !status.success() => Err(Failure::Exit(status)),
        Ok(Ok(_)) => Ok(()),
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
    for (i, entry) in cfg.commands.iter().enumerate() {
        let at = || vec!["commands".to_string(), i.to_string()];
        commands.push(command_argv(entry).map_err(|e| bad(at(), e))?);
    }
    if let Some(line) = &cfg.command {
        tracing::warn!(
            "{}: \"command\" is deprecated (as in Telegraf): use commands = [{}]",
            ctx.id,
            split_command(line)
                .unwrap_or_default()
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let value = toml::Value::String(line.clone());
        commands.push(command_argv(&value).map_err(|e| bad(vec!["command".into()], e))?);
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
    if commands.is_empty() {
        return Err(bad(
            vec!["commands".into()],
            "no command specified (set commands = [[\"program\", \"arg\"]])".into(),
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
        ignore_error: cfg.ignore_error,
        log_stderr: cfg.log_stderr,
        id: ctx.id.clone(),
    })))
}

/// One `commands` entry as program and arguments: an array is taken word for word (no
/// splitting, so arguments may hold spaces and quotes); a string is split shell-like.
fn command_argv(entry: &toml::Value) -> Result<Vec<String>, String> {
    let argv = match entry {
        toml::Value::String(line) => split_command(line).map_err(|e| format!("{e} in {line:?}"))?,
        toml::Value::Array(words) => words
            .iter()
            .map(|w| match w {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "command {entry} has the entry {other} of type {}, expected a string",
                    other.type_str()
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "a command is an array of strings or a string, not a {}",
                other.type_str()
            ));
        }
    };
    match argv.first() {
        None => Err("empty command".into()),
        Some(p) if p.is_empty() => Err("empty program name".into()),
        Some(_) => Ok(argv),
    }
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

    fn temp_dir(name: &str) -> crate::common::test_dir::TestDir {
        crate::common::test_dir::TestDir::new(&format!("exec-{name}"))
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
    async fn array_commands_keep_spaces_and_quotes_in_arguments() {
        let dir = temp_dir("array");
        // One metric per argument: its spaces as "_", its length as the value.
        let s = script(
            &dir,
            "each.sh",
            "for a in \"$@\"; do echo \"$(printf %s \"$a\" | tr ' ' _) ${#a}\"; done",
        );
        let mut input = exec(&format!(
            "commands = [['{s}', 'two words', \"it's\"]]\ncommand = '{s} \"x y\" z'"
        ))
        .unwrap();
        let acc = gather(&mut input).await;
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(
            names(&acc),
            [
                "two_words Some(Int(9))",
                "it's Some(Int(4))",
                "x_y Some(Int(3))",
                "z Some(Int(1))"
            ]
        );
    }

    #[tokio::test]
    async fn non_zero_exit_parses_nothing_unless_ignore_error() {
        let dir = temp_dir("ignore");
        let s = script(
            &dir,
            "partial.sh",
            "echo done 1\necho 'E! half failed' >&2\nexit 1",
        );
        let mut strict = exec(&format!("commands = [['{s}']]")).unwrap();
        let acc = gather(&mut strict).await;
        assert!(
            acc.metrics.is_empty(),
            "Telegraf parses nothing on a failure"
        );
        assert_eq!(acc.errors.len(), 1);
        assert!(
            acc.errors[0].contains("exit status: 1"),
            "{}",
            acc.errors[0]
        );
        let mut lenient = exec(&format!(
            "commands = [['{s}']]\nignore_error = true\nlog_stderr = true"
        ))
        .unwrap();
        let acc = gather(&mut lenient).await;
        assert!(acc.errors.is_empty(), "{:?}", acc.errors);
        assert_eq!(names(&acc), ["done Some(Int(1))"]);
    }

    #[tokio::test]
    async fn ignore_error_still_reports_a_timeout_but_parses_what_came() {
        let dir = temp_dir("ignore-timeout");
        let s = script(&dir, "hang.sh", "echo early 5\nsleep 30");
        let mut input = exec(&format!(
            "commands = [['{s}']]\nignore_error = true\ntimeout = \"300ms\""
        ))
        .unwrap();
        let acc = gather(&mut input).await;
        assert_eq!(names(&acc), ["early Some(Int(5))"]);
        assert_eq!(acc.errors.len(), 1);
        assert!(acc.errors[0].contains("timed out"), "{}", acc.errors[0]);
    }

    #[test]
    fn command_entries_of_the_wrong_shape_are_refused() {
        let err = |t: &str| match exec(t) {
            Err(BuildError::Config(c)) => (c.path, c.message),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted {t}"),
        };
        assert_eq!(err("commands = [[]]").0, ["commands", "0"]);
        assert_eq!(err("commands = [['a'], ['b', 3]]").0, ["commands", "1"]);
        assert!(err("commands = [['b', 3]]").1.contains("integer"));
        assert_eq!(err("commands = [5]").0, ["commands", "0"]);
        assert_eq!(err("commands = [['']]").0, ["commands", "0"]);
        assert_eq!(err("command = ''").0, ["command"]);
        assert!(err("commands = []").1.contains("no command"));
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
