//! `drover`: flags, logging, config, then `Server::start`; everything else is in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drover::config::{Config, Env, LogConfig, LogFormat, Origins};
use drover::server::{Options, Server};

/// Fronts a Mesos/Marathon cluster: Host-routing HTTP proxy, TCP service ports, metrics.
#[derive(Parser)]
#[command(name = "drover", version, about)]
struct Cli {
    /// The config file (TOML). Without the flag: drover.toml in the working directory if
    /// there is one, else none. DROVER_<SECTION>__<KEY> variables go over it either way.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and its catalog file; print every problem; exit 1 if any.
    Check,
    /// Print the effective configuration as TOML, each value with its origin (file, env,
    /// default), secret file paths redacted.
    Config,
}

/// The file read when `--config` is not given, if it exists.
const DEFAULT_FILE: &str = "drover.toml";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli
        .config
        .or_else(|| Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()));
    let env = Env::from_process();
    match cli.command {
        Some(Command::Check) => {
            init_logging(&LogConfig::default());
            check(file.as_deref(), &env)
        }
        Some(Command::Config) => show(file.as_deref(), &env),
        None => run(file.as_deref(), &env),
    }
}

/// The configuration from `file` (if any) with the environment over it, or its problems
/// printed. With `required`, nothing at all (no file, no variable) is refused: a Drover
/// with every feature off would serve nothing.
fn load(file: Option<&Path>, env: &Env, required: bool) -> Result<(Config, Origins), ExitCode> {
    if required && file.is_none() && env.is_empty() {
        eprintln!(
            "drover: no configuration: no --config, no {DEFAULT_FILE} in the working directory \
             and no DROVER_<SECTION>__<KEY> variables (see docs/configuration.md)"
        );
        return Err(ExitCode::FAILURE);
    }
    Config::load_layered(file, env).map_err(|e| {
        // A catalog file's `[[app]]` would read as an unknown section: say what it is.
        match file.and_then(catalog_file_hint) {
            Some(hint) => eprintln!("{hint}"),
            None => eprintln!("{e}"),
        }
        ExitCode::FAILURE
    })
}

/// What the configuration is read from, for people: the file and the variables' names.
fn sources(file: Option<&Path>, env: &Env) -> String {
    let vars: Vec<&str> = env.names().collect();
    match (file, vars.is_empty()) {
        (Some(f), true) => f.display().to_string(),
        (Some(f), false) => format!("{} with {}", f.display(), vars.join(", ")),
        (None, _) => format!("the environment ({})", vars.join(", ")),
    }
}

/// `drover config`: the effective configuration with origins on stdout.
fn show(file: Option<&Path>, env: &Env) -> ExitCode {
    for note in env.notes() {
        eprintln!("drover: {note}");
    }
    let (config, origins) = match load(file, env, false) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let vars: Vec<&str> = env.names().collect();
    println!(
        "# Config file: {}\n# Variables: {}",
        file.map_or("none".to_string(), |f| f.display().to_string()),
        if vars.is_empty() {
            "none".to_string()
        } else {
            vars.join(", ")
        }
    );
    print!(
        "{}",
        drover::config::render::render_with_origins(&config, &origins)
    );
    ExitCode::SUCCESS
}

/// Drover's own log lines on stderr, as `[log]` asks: the filter from `RUST_LOG`, else
/// `[log] level`, else `info`; text for people or one JSON object a line for shippers.
/// Set once at start: a reload that changes `[log]` takes effect at the next start.
fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| match &log.level {
        // Checked by the config already.
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
        // hickory's server logs every query at info.
        None => EnvFilter::new("info,hickory_server=warn"),
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr);
    match log.format {
        LogFormat::Json => builder
            .json()
            // Fields at the top level, beside `timestamp`, `level` and `target`.
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        // Colour codes only for a terminal: in a log file or a journal they are noise.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn check(file: Option<&Path>, env: &Env) -> ExitCode {
    for note in env.notes() {
        eprintln!("drover: {note}");
    }
    let config = match load(file, env, true) {
        Ok((c, _)) => c,
        Err(code) => return code,
    };
    let label = sources(file, env);
    // Files the sources read only once they run: a missing one must fail the check, not
    // pass it and then disable its source at run time.
    let mut problems: Vec<String> = unreadable_files(&config);
    if let Some(https) = &config.https {
        // The certificates must load as they would at start.
        let metrics = drover::metrics::Metrics::new(prometheus::Registry::new());
        if let Err(e) = drover::proxy::tls::CertStore::load(&https.certs, &metrics) {
            problems.push(format!("https.certs: {e}"));
        }
    }
    if let Some(catalog) = &config.catalog {
        match std::fs::read_to_string(&catalog.file)
            .map_err(drover::source::file::CatalogFileError::Read)
            .and_then(|text| drover::source::file::parse(&text))
        {
            Ok(snapshot) => {
                let mut built = drover::catalog::build(&snapshot.apps, &catalog.groups);
                // CA files of `h2` backends (DROVER_{n}_BACKEND_CA), read as a rebuild would.
                drover::routing::backend_tls::load(&mut built);
                problems.extend(
                    snapshot
                        .problems
                        .iter()
                        .map(|p| format!("{}: {p}", catalog.file.display())),
                );
                problems.extend(
                    built
                        .problems
                        .iter()
                        .map(|p| format!("{}: {p}", catalog.file.display())),
                );
            }
            Err(e) => problems.push(format!("{}: {e}", catalog.file.display())),
        }
    }
    if problems.is_empty() {
        println!("{label}: ok");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{label}: {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::FAILURE
    }
}

/// When `path` holds `[[app]]` tables, it is a catalog file given where a config belongs:
/// say so and how a catalog file is checked.
fn catalog_file_hint(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    table.get("app")?.as_array()?;
    Some(format!(
        "{0} is a catalog file ([[app]] tables), not a config file. A catalog file is checked \
         through the config that names it: put\n  [catalog]\n  file = \"{0}\"\n\
         in a config file and run `drover check --config THAT_FILE`.",
        path.display()
    ))
}

/// Every file the config names for a source (credentials, CA bundles) that cannot be
/// read, or, for a CA bundle, holds no usable certificate; each with its key.
fn unreadable_files(config: &Config) -> Vec<String> {
    let mut files: Vec<(&str, &Path, bool)> = Vec::new();
    if let Some(m) = &config.marathon {
        files.extend(
            m.password_file
                .as_deref()
                .map(|f| ("marathon.password_file", f, false)),
        );
        files.extend(m.ca_file.as_deref().map(|f| ("marathon.ca_file", f, true)));
    }
    if let Some(m) = &config.mesos {
        files.extend(
            m.secret_file
                .as_deref()
                .map(|f| ("mesos.secret_file", f, false)),
        );
        files.extend(m.ca_file.as_deref().map(|f| ("mesos.ca_file", f, true)));
    }
    let mut problems = Vec::new();
    if let Some(drover::config::AccessLogConfig {
        target: drover::config::AccessLogTarget::File(path),
        ..
    }) = &config.access_log
    {
        // Drover creates the file, not its directory.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            problems.push(format!(
                "access_log.path = {:?}: directory {} does not exist",
                path.display().to_string(),
                dir.display()
            ));
        }
    }
    for (key, file, ca) in files {
        let shown = format!("{key} = {:?}", file.display().to_string());
        if let Err(e) = std::fs::read(file) {
            problems.push(format!("{shown}: cannot read: {e}"));
        } else if ca {
            let section = key.split('.').next().unwrap_or(key);
            if let Err(e) = drover::source::https::TlsClient::new(Some(file), section) {
                problems.push(format!("{shown}: {e}"));
            }
        }
    }
    problems
}

fn run(file: Option<&Path>, env: &Env) -> ExitCode {
    let config = match load(file, env, true) {
        Ok((c, _)) => {
            init_logging(&c.log);
            for note in env.notes() {
                tracing::warn!("{note}");
            }
            tracing::info!(from = %sources(file, env), "configuration read");
            c
        }
        Err(code) => return code,
    };
    let options = Options {
        // With no file there is nothing to watch; the environment does not change.
        config_path: file.map(Path::to_path_buf),
        handle_signals: true,
    };
    match Server::start(config, options) {
        // A passed drain deadline is still a requested, orderly exit; a crash is not.
        Ok(server) => match server.join() {
            Ok(_drained) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(70),
        },
        Err(e) => {
            eprintln!("drover: {e}");
            ExitCode::FAILURE
        }
    }
}

/// stderr that never reports a failed write. With stderr gone (a log pipe whose reader
/// exited), tracing-subscriber would report the failure on stderr itself, which panics;
/// Drover must keep serving and keep honouring signals instead, losing only the log lines.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
