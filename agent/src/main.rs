//! The sonde command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sonde::config::{self, Config, Registry, Selection, Sources};
use sonde::pipeline::{self, Running};
use sonde::service;
use tracing::{error, info, warn};

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: sonde_alloc::MiMalloc = sonde_alloc::MiMalloc;

// Its memcpy, memmove, memset, memcmp and bcmp replace musl's slow ones in the static build.
#[cfg(target_env = "musl")]
extern crate sonde_memfns;

/// The version with the commit and build date stamped by build.rs.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SONDE_COMMIT"),
    ", built ",
    env!("SONDE_BUILD_DATE"),
    ")"
);

/// Where sonde looks for a config when none is given.
const SYSTEM_CONFIG: &str = "/etc/sonde/sonde.toml";

#[derive(Parser)]
#[command(
    name = "sonde",
    version = LONG_VERSION,
    about = "A metrics agent: inputs, processors, aggregators and outputs in one small binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Default)]
struct Filters {
    /// Only these inputs, separated by ':'.
    #[arg(long, value_name = "a:b", global = true)]
    input_filter: Option<String>,
    /// Only these outputs, separated by ':'.
    #[arg(long, value_name = "a:b", global = true)]
    output_filter: Option<String>,
    /// Only these processors, separated by ':'.
    #[arg(long, value_name = "a:b", global = true)]
    processor_filter: Option<String>,
    /// Only these aggregators, separated by ':'.
    #[arg(long, value_name = "a:b", global = true)]
    aggregator_filter: Option<String>,
}

impl Filters {
    fn selection(&self) -> Selection {
        fn split(s: &Option<String>) -> Vec<String> {
            s.as_deref()
                .map(|s| {
                    s.split(':')
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        }
        Selection {
            inputs: split(&self.input_filter),
            outputs: split(&self.output_filter),
            processors: split(&self.processor_filter),
            aggregators: split(&self.aggregator_filter),
        }
    }
}

#[derive(Args, Default)]
struct RunArgs {
    /// Configuration file (repeatable). Default: /etc/sonde/sonde.toml, else the embedded default.
    #[arg(long, value_name = "FILE", global = true)]
    config: Vec<PathBuf>,
    /// Directory whose *.toml and *.conf files are merged in name order (repeatable).
    #[arg(long, value_name = "DIR", global = true)]
    config_directory: Vec<PathBuf>,
    /// Gather once, run processors and aggregators, print line protocol to stdout and exit.
    #[arg(long)]
    test: bool,
    /// Gather once, write to the outputs, and exit.
    #[arg(long, conflicts_with = "test")]
    once: bool,
    /// How long service inputs (listeners) run in --test/--once mode.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    test_wait: Duration,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
    /// Log only errors.
    #[arg(long)]
    quiet: bool,
    /// Log format: text or json (overrides [agent] logformat).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(flatten)]
    filters: Filters,
}

#[derive(Subcommand)]
enum Command {
    /// Print a sample configuration built from each plugin's sample.
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// List the plugins with a one-line description.
    Plugins,
    /// Print the version.
    Version,
    /// Check that a running sonde answers on its HTTP endpoint (the container HEALTHCHECK).
    Health {
        /// The URL to GET; any 2xx answer is healthy. Default: the /metrics endpoint of the
        /// embedded default config, on $SONDE_LISTEN when that is set.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Write files generated from the configuration (alert rules, dashboards).
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
}

#[derive(Subcommand)]
enum ExportWhat {
    /// The Prometheus rule file with the alerts of the configured inputs (inputs.crypto).
    PrometheusRules {
        /// Write to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The Grafana dashboard (JSON model) of the configured inputs (inputs.crypto); with
    /// --output-dir also Grafana's provisioning files for it and the Prometheus data source.
    GrafanaDashboard {
        /// Write sonde-crypto.json and provisioning/{dashboards,datasources}/*.yaml here
        /// instead of the dashboard to standard output.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// The Prometheus URL of the provisioned data source.
        #[arg(long, value_name = "URL", default_value = "http://localhost:9090")]
        prometheus_url: String,
        /// Where Grafana will find the dashboard file (the provider's path).
        #[arg(
            long,
            value_name = "DIR",
            default_value = "/var/lib/grafana/dashboards/sonde"
        )]
        dashboards_path: String,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration and exit (0 when valid).
    Check,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    sonde_plugins::config_types::parse_duration(s)
}

fn main() -> ExitCode {
    #[cfg(target_env = "musl")]
    sonde_alloc::configure();
    let cli = Cli::parse();
    let registry = Registry::builtin();
    let selection = cli.run.filters.selection();
    match cli.command {
        Some(Command::Version) => {
            println!("sonde {LONG_VERSION}");
            ExitCode::SUCCESS
        }
        Some(Command::Health { url, timeout }) => {
            let url = url.unwrap_or_else(service::default_health_url);
            match service::check_health(&url, timeout) {
                Ok(status) => {
                    println!("healthy: {url} answered {status}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Plugins) => {
            print_plugins();
            ExitCode::SUCCESS
        }
        Some(Command::Config { action: None }) => {
            print!("{}", config::sample_config(&selection, &registry));
            ExitCode::SUCCESS
        }
        Some(Command::Config {
            action: Some(ConfigAction::Check),
        }) => match load(&cli.run, &selection, &registry, true) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                println!("configuration is valid ({})", loaded.origin);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Export { what }) => export(&cli.run, &selection, &registry, what),
        None => run(cli.run, selection, registry),
    }
}

/// `sonde export ...`: validates the configuration, then writes what was asked.
fn export(
    args: &RunArgs,
    selection: &Selection,
    registry: &Registry,
    what: ExportWhat,
) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        // Building plugins may need a runtime (as when running).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _guard = runtime.enter();
        load(args, selection, registry, false).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut raw =
            config::input_tables(&sources(args), "crypto").map_err(|e| anyhow::anyhow!("{e}"))?;
        // --input-filter applies here too.
        if !selection.inputs.is_empty() && !selection.inputs.iter().any(|i| i == "crypto") {
            raw.clear();
        }
        let exports = sonde::export::crypto_exports(raw)?;
        if exports.is_empty() {
            anyhow::bail!(
                "nothing to export: the configuration has no input with generated files (inputs.crypto)"
            );
        }
        match what {
            ExportWhat::PrometheusRules { output } => {
                let text = sonde::export::prometheus_rules(&exports);
                match output {
                    Some(path) => std::fs::write(&path, text)
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
                    None => print!("{text}"),
                }
            }
            ExportWhat::GrafanaDashboard {
                output_dir,
                prometheus_url,
                dashboards_path,
            } => {
                let dashboard = sonde::export::grafana_dashboard(&exports);
                let json = serde_json::to_string_pretty(&dashboard)? + "\n";
                match output_dir {
                    None => print!("{json}"),
                    Some(dir) => {
                        let write = |rel: &str, text: &str| -> anyhow::Result<()> {
                            let path = dir.join(rel);
                            if let Some(parent) = path.parent() {
                                std::fs::create_dir_all(parent)?;
                            }
                            std::fs::write(&path, text)
                                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
                        };
                        write("sonde-crypto.json", &json)?;
                        write(
                            "provisioning/dashboards/sonde.yaml",
                            &sonde::export::dashboard_provider(&dashboards_path),
                        )?;
                        write(
                            "provisioning/datasources/prometheus.yaml",
                            &sonde::export::datasource(&prometheus_url),
                        )?;
                    }
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_plugins() {
    use sonde_plugins::registry;
    fn list<T>(kind: &str, specs: &[registry::Spec<T>]) {
        for s in specs {
            println!("{:<28} {}", format!("{kind}.{}", s.name), s.description);
        }
    }
    list("inputs", registry::inputs());
    list("processors", registry::processors());
    list("aggregators", registry::aggregators());
    list("outputs", registry::outputs());
}

/// The files sonde loads: the ones given, else the system config, else none (embedded).
fn sources(args: &RunArgs) -> Sources {
    if args.config.is_empty() && args.config_directory.is_empty() {
        if Path::new(SYSTEM_CONFIG).exists() {
            return Sources {
                files: vec![SYSTEM_CONFIG.into()],
                directories: vec![],
            };
        }
        return Sources::default();
    }
    Sources {
        files: args.config.clone(),
        directories: args.config_directory.clone(),
    }
}

/// A loaded configuration, where it came from, and the warnings raised while loading it.
struct Loaded {
    cfg: Config,
    origin: String,
    warnings: Vec<String>,
}

/// Loads and checks the configuration. Warnings raised meanwhile (by the loader or a plugin's
/// build) are kept for the caller to show: the configured logger does not exist yet.
fn load(
    args: &RunArgs,
    selection: &Selection,
    registry: &Registry,
    need_outputs: bool,
) -> Result<Loaded, String> {
    let (result, warnings) = capture_warnings(|| load_config(args, selection, registry));
    let (cfg, origin) = result.map_err(|e| {
        let mut text = e.to_string();
        for w in &warnings {
            text.push_str(&format!("\nwarning: {w}"));
        }
        text
    })?;
    check_plugins(&cfg, selection, need_outputs)?;
    Ok(Loaded {
        cfg,
        origin,
        warnings,
    })
}

/// Runs `f` with a logger that keeps warnings and errors as text lines instead of printing them.
fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    // A table may be built more than once while its errors are collected: say each thing once.
    let mut lines: Vec<String> = Vec::new();
    for l in text.lines().map(str::trim) {
        if !lines.iter().any(|seen| seen == l) {
            lines.push(l.to_string());
        }
    }
    (out, lines)
}

/// A configuration that gathers nothing or sends nowhere is a mistake, not a quiet agent; so is
/// a `--*-filter` name that selects no plugin of the configuration (a typo would run nothing).
fn check_plugins(cfg: &Config, selection: &Selection, need_outputs: bool) -> Result<(), String> {
    let kinds: [(&str, &[String], Vec<&str>); 4] = [
        (
            "input",
            &selection.inputs,
            cfg.inputs.iter().map(|p| p.name.as_str()).collect(),
        ),
        (
            "output",
            &selection.outputs,
            cfg.outputs.iter().map(|p| p.name.as_str()).collect(),
        ),
        (
            "processor",
            &selection.processors,
            cfg.processors.iter().map(|p| p.name.as_str()).collect(),
        ),
        (
            "aggregator",
            &selection.aggregators,
            cfg.aggregators.iter().map(|p| p.name.as_str()).collect(),
        ),
    ];
    for (kind, filter, present) in &kinds {
        if let Some(missing) = filter.iter().find(|n| !present.contains(&n.as_str())) {
            return Err(format!(
                "--{kind}-filter: the configuration has no {kind}s.{missing}"
            ));
        }
    }
    if cfg.inputs.is_empty() {
        return Err("no inputs in the configuration: add an [[inputs.NAME]] section".into());
    }
    if need_outputs && cfg.outputs.is_empty() {
        return Err("no outputs in the configuration: add an [[outputs.NAME]] section".into());
    }
    Ok(())
}

/// The loaded plugins, one log line per kind, as Telegraf lists them at startup.
fn log_plugins(cfg: &Config) {
    fn names<'a>(it: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
        let v: Vec<String> = it
            .map(|(n, a)| match a {
                Some(a) => format!("{n}::{a}"),
                None => n.to_string(),
            })
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(" ")
        }
    }
    let i = names(
        cfg.inputs
            .iter()
            .map(|p| (p.name.as_str(), p.alias.as_deref())),
    );
    let p = names(
        cfg.processors
            .iter()
            .map(|p| (p.name.as_str(), p.alias.as_deref())),
    );
    let a = names(
        cfg.aggregators
            .iter()
            .map(|p| (p.name.as_str(), p.alias.as_deref())),
    );
    let o = names(
        cfg.outputs
            .iter()
            .map(|p| (p.name.as_str(), p.alias.as_deref())),
    );
    info!("loaded inputs: {i}");
    info!("loaded processors: {p}");
    info!("loaded aggregators: {a}");
    info!("loaded outputs: {o}");
}

/// Loads the configuration; also says where it came from.
fn load_config(
    args: &RunArgs,
    selection: &Selection,
    registry: &Registry,
) -> Result<(Config, String), config::ConfigError> {
    let src = sources(args);
    if src.files.is_empty() && src.directories.is_empty() {
        let cfg = config::load_str(
            config::DEFAULT_CONFIG,
            "<embedded default>",
            selection,
            registry,
        )?;
        return Ok((
            cfg,
            "no config file found: running the embedded default config".into(),
        ));
    }
    let cfg = config::load(&src, selection, registry)?;
    let names: Vec<String> = src
        .files
        .iter()
        .chain(src.directories.iter())
        .map(|p| p.display().to_string())
        .collect();
    Ok((cfg, format!("loaded config from {}", names.join(", "))))
}

fn init_logging(args: &RunArgs, cfg: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut agent = cfg.agent.clone();
    agent.debug |= args.debug;
    agent.quiet |= args.quiet;
    let from_config = || agent.log_directives().parse::<Targets>();
    let filter = match std::env::var("SONDE_LOG") {
        Ok(s) => s.parse::<Targets>().or_else(|e| {
            eprintln!("SONDE_LOG={s:?} is not a list of target=level directives ({e}); using the config's log levels");
            from_config()
        })?,
        Err(_) => from_config()?,
    };
    let json = args.log_format.as_deref().unwrap_or(&cfg.agent.logformat) == "json";
    // One writer type for the file and stderr: each distinct subscriber type compiles its own
    // copy of the formatting code, so two types (text, json) rather than four.
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (writer, ansi) = match &cfg.agent.logfile {
        Some(path) if !path.as_os_str().is_empty() => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        _ => {
            use std::io::IsTerminal;
            (
                BoxMakeWriter::new(std::io::stderr),
                std::io::stderr().is_terminal(),
            )
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_target(false)
        .with_writer(writer)
        .with_ansi(ansi);
    if json {
        builder.json().finish().with(filter).init()
    } else {
        builder.finish().with(filter).init()
    }
    Ok(())
}

fn run(args: RunArgs, selection: Selection, registry: Registry) -> ExitCode {
    if let Some(f) = &args.log_format
        && f != "json"
        && f != "text"
    {
        eprintln!("--log-format must be \"text\" or \"json\", not {f:?}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Plugins may bind sockets or spawn tasks while being built.
    let _guard = runtime.enter();
    let Loaded {
        mut cfg,
        origin,
        warnings,
    } = match load(&args, &selection, &registry, !args.test) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logging(&args, &cfg) {
        eprintln!("cannot open the log file: {e:#}");
        return ExitCode::FAILURE;
    }
    info!("{origin}");
    for w in &warnings {
        warn!("{w}");
    }
    log_plugins(&cfg);
    runtime.block_on(async move {
        if args.test {
            let metrics = pipeline::gather_once(&mut cfg, args.test_wait).await;
            let mut out = Vec::new();
            for m in &metrics {
                sonde_plugins::codec::influx::write_metric(&mut out, m, &Default::default());
            }
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        if args.once {
            return match pipeline::run_once(cfg, args.test_wait).await {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    error!("cannot start: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        serve(cfg, &args, &selection, &registry).await
    })
}

/// How long startup waits for the outputs' first connect before telling systemd it is ready
/// anyway (an output that cannot connect keeps retrying; it must not hold up the agent).
const READY_LIMIT: Duration = Duration::from_secs(5);

/// Runs until SIGINT/SIGTERM; SIGHUP reloads, SIGUSR1 flushes.
async fn serve(
    mut cfg: Config,
    args: &RunArgs,
    selection: &Selection,
    registry: &Registry,
) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut sigint, mut sigterm, mut sighup, mut sigusr1) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = pipeline::start_plugins(&mut cfg).await {
        error!("cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let mut running = match Running::start(cfg) {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    running.ready(READY_LIMIT).await;
    info!("started");
    service::notify("READY=1");
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sigusr1.recv() => {
                info!("SIGUSR1: flushing outputs");
                running.flush_now();
            }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading the configuration");
                service::notify(&service::reloading_state());
                match load(args, selection, registry, true) {
                    Ok(Loaded { cfg, origin, warnings }) => {
                        for w in &warnings {
                            warn!("{w}");
                        }
                        running = running.reload(cfg).await;
                        running.ready(READY_LIMIT).await;
                        info!("reloaded: {origin}");
                    }
                    Err(e) => error!("reload failed, keeping the running configuration:\n{e}"),
                }
                service::notify("READY=1");
            }
        }
    }
    info!("shutting down");
    service::notify("STOPPING=1");
    let lost = running.shutdown().await;
    if lost > 0 {
        // Already logged per output; the exit status tells the service manager too.
        error!(lost, "stopped with metrics lost");
        return ExitCode::FAILURE;
    }
    info!("stopped");
    ExitCode::SUCCESS
}
