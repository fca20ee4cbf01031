//! The sonde command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sonde::config::{self, Config, Registry, Selection, Sources};
use sonde::pipeline::{self, Running};
use tracing::{error, info};

/// Where sonde looks for a config when none is given.
const SYSTEM_CONFIG: &str = "/etc/sonde/sonde.toml";

#[derive(Parser)]
#[command(
    name = "sonde",
    version,
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
    let cli = Cli::parse();
    let registry = Registry::builtin();
    let selection = cli.run.filters.selection();
    match cli.command {
        Some(Command::Version) => {
            println!("sonde {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
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
        }) => match load(&cli.run, &selection, &registry) {
            Ok((_, origin)) => {
                println!("configuration is valid ({origin})");
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
        load(args, selection, registry).map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// Loads the configuration; also says where it came from.
fn load(
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
    use tracing_subscriber::EnvFilter;
    let level = if args.debug || cfg.agent.debug {
        "debug"
    } else if args.quiet || cfg.agent.quiet {
        "error"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("SONDE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let json = args.log_format.as_deref().unwrap_or(&cfg.agent.logformat) == "json";
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &cfg.agent.logfile {
        Some(path) if !path.as_os_str().is_empty() => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let builder = builder
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false);
            if json {
                builder.json().init()
            } else {
                builder.init()
            }
        }
        _ => {
            use std::io::IsTerminal;
            let builder = builder
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            if json {
                builder.json().init()
            } else {
                builder.init()
            }
        }
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
    let (mut cfg, origin) = match load(&args, &selection, &registry) {
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
            let lost = pipeline::run_once(cfg, args.test_wait).await;
            return if lost == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        serve(cfg, &args, &selection, &registry).await
    })
}

/// Runs until SIGINT/SIGTERM; SIGHUP reloads, SIGUSR1 flushes.
async fn serve(
    cfg: Config,
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
    let mut running = Running::start(cfg);
    info!("started");
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
                match load(args, selection, registry) {
                    Ok((cfg, origin)) => {
                        running = running.reload(cfg).await;
                        info!("reloaded: {origin}");
                    }
                    Err(e) => error!("reload failed, keeping the running configuration:\n{e}"),
                }
            }
        }
    }
    info!("shutting down");
    running.shutdown().await;
    info!("stopped");
    ExitCode::SUCCESS
}
