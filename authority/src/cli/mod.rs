//! The command line: `serve`, and the admin operations for bootstrapping
//! (`user …`, `client …`, `resource …`), which work on Redis directly with the same
//! configuration as the server.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use token_repository::TokenReader as _;

use crate::backup;
use crate::config::{Config, all_settings};
use crate::problem::Problem;
use crate::state::AppState;
use crate::{logging, server};

mod accounts;

use self::accounts::{ClientCommand, ResourceCommand, UserCommand, client, resource, user};

/// The token authority.
#[derive(Debug, Parser)]
#[command(name = "token-authority", version, about, after_help = environment_help())]
struct Cli {
    /// A TOML file with settings (keys: the environment variable names in
    /// lower case, and `[[providers]]` tables of connected services); the
    /// environment overrides it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage resource servers: the audiences tokens may be issued for
    /// (RFC 8707).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Connected services.
    #[command(subcommand)]
    Connect(ConnectCommand),
    /// Write every user, client, connected-service connection and stored
    /// credentials record as JSON lines, exactly as stored (password and
    /// secret hashes, encrypted envelopes; no tokens). For backups and for moving to
    /// another Redis. The output holds hashes: keep it as safe as Redis.
    Export {
        /// Write to this new file (created with mode 0600) instead of
        /// standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read an export into an empty deployment (refused, with nothing
    /// written, when it holds any user, client, connection or stored
    /// credentials). Connections and credentials work afterwards with the
    /// same CONNECT_KEYS and provider names.
    Import {
        /// Read this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectCommand {
    /// Re-encrypt every stored connection and credentials record with the current key of
    /// CONNECT_KEYS (after adding a new first key); older keys can be
    /// removed once it reports nothing unreadable.
    Reencrypt,
}

fn environment_help() -> String {
    let mut help = String::from("Environment (serve and the admin commands):\n");
    for setting in all_settings() {
        help.push_str(&setting.help_line());
        help.push('\n');
    }
    help
}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    // One rustls crypto provider (ring) for Redis and provider calls alike.
    token_repository::redis::install_crypto_provider();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .on_thread_park(logging::flush_idle_worker)
        .on_thread_stop(logging::flush_idle_worker)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve => serve(config).await,
        Command::User(command) => user(&admin_state(config).await?, command)
            .await
            .map_err(describe),
        Command::Client(command) => client(&admin_state(config).await?, command)
            .await
            .map_err(describe),
        Command::Resource(command) => resource(&admin_state(config).await?, command)
            .await
            .map_err(describe),
        Command::Connect(ConnectCommand::Reencrypt) => {
            let state = admin_state(config).await?;
            let report = state
                .connect()
                .reencrypt()
                .await
                .map_err(|error| error.to_string())?;
            println!(
                "re-encrypted: {}, already current: {}, reconnect tombstones: {}, unreadable: {}, busy: {}",
                report.reencrypted,
                report.current,
                report.tombstones,
                report.unreadable,
                report.busy
            );
            if report.unreadable > 0 || report.busy > 0 {
                return Err(
                    "some records were not re-encrypted (unreadable or busy); keep the old keys"
                        .to_owned(),
                );
            }
            Ok(())
        }
        Command::Export { output } => export(&admin_state(config).await?, output).await,
        Command::Import { input } => import(&admin_state(config).await?, input).await,
    }
}

/// The state for an admin command; a TLS certificate problem with Redis is
/// reported naming the variable (other errors surface in the command).
async fn admin_state(config: Config) -> Result<AppState, String> {
    let state = AppState::new(config).map_err(|error| error.to_string())?;
    if let Err(error) = state.store().ping().await {
        refuse_rejected_tls(&state, &error)?;
    }
    Ok(state)
}

/// A TLS handshake with Redis that failed on a certificate does not heal
/// by waiting: an error naming the variable to fix.
fn refuse_rejected_tls(state: &AppState, error: &token_repository::Error) -> Result<(), String> {
    if !error.is_tls_rejected() {
        return Ok(());
    }
    let variable = if state.config().redis_tls.is_some() {
        "REDIS_CA_FILE"
    } else {
        "REDIS_URL"
    };
    Err(format!(
        "{variable}: the TLS handshake with Redis failed on a certificate \
         (is REDIS_CA_FILE the CA that signed the server's certificate, \
         and the client certificate one the server accepts?): {error}"
    ))
}

async fn export(state: &AppState, output: Option<PathBuf>) -> Result<(), String> {
    let report = match output {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options
                .open(&path)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let report = backup::export(state, &mut writer)
                .await
                .map_err(|error| error.to_string())?;
            writer
                .into_inner()
                .map_err(|error| error.to_string())?
                .sync_all()
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            report
        }
        None => {
            let mut writer = std::io::BufWriter::new(std::io::stdout().lock());
            backup::export(state, &mut writer)
                .await
                .map_err(|error| error.to_string())?
        }
    };
    eprintln!(
        "exported {} users, {} clients, {} connections, {} resources, {} credentials, {} providers",
        report.users,
        report.clients,
        report.connections,
        report.resources,
        report.credentials,
        report.providers
    );
    Ok(())
}

async fn import(state: &AppState, input: Option<PathBuf>) -> Result<(), String> {
    let report = match input {
        Some(path) => {
            let file = std::fs::File::open(&path)
                .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
            backup::import(state, std::io::BufReader::new(file)).await
        }
        None => backup::import(state, std::io::stdin().lock()).await,
    }
    .map_err(|error| error.to_string())?;
    eprintln!(
        "imported {} users, {} clients, {} connections, {} resources, {} credentials, {} providers",
        report.users,
        report.clients,
        report.connections,
        report.resources,
        report.credentials,
        report.providers
    );
    Ok(())
}

fn describe(problem: Problem) -> String {
    format!("{} ({})", problem.description(), problem.code())
}

async fn serve(mut config: Config) -> Result<(), String> {
    let listen_addr = config.listen_addr;
    let listener = tokio::net::TcpListener::bind(listen_addr)
        .await
        .map_err(|error| format!("cannot listen on {listen_addr}: {error}"))?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    config.listen_addr = bound;
    let state = AppState::serving(config).map_err(|error| error.to_string())?;
    if let Err(error) = state.store().ping().await {
        refuse_rejected_tls(&state, &error)?;
        // Not fatal: the server answers 503 and recovers when Redis comes
        // (and /readyz checks the eviction policy then).
        tracing::warn!(%error, "Redis is not reachable yet; serving 503 until it is");
    } else {
        check_default_audience(&state).await?;
        match crate::eviction::check(state.store()).await {
            Ok(()) => {}
            Err(crate::eviction::EvictionError::Unreachable(error)) => {
                // Not fatal: the server answers 503 and recovers when Redis
                // comes (and /readyz checks the policy then).
                tracing::warn!(%error, "Redis is not reachable yet; serving 503 until it is");
            }
            Err(error) if state.config().allow_redis_eviction => {
                tracing::warn!(%error, "starting anyway: ALLOW_REDIS_EVICTION=true");
            }
            Err(error) => {
                tracing::error!(%error, "refusing to start (ALLOW_REDIS_EVICTION=true overrides)");
                return Err(format!(
                    "{error}; refusing to start (set ALLOW_REDIS_EVICTION=true to start anyway)"
                ));
            }
        }
    }
    let metrics_listener = match state.config().metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| format!("cannot listen on METRICS_ADDR {addr}: {error}"))?;
            let bound = listener
                .local_addr()
                .map_err(|error| format!("cannot read the bound address: {error}"))?;
            tracing::info!("serving /metrics on http://{bound}");
            Some(listener)
        }
        None => None,
    };
    tracing::info!(
        config = ?state.config(),
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "starting"
    );
    // The providers added through the admin API, before serving; then
    // kept in step with the other replicas.
    if let Err(error) = state.connect().reload_providers(true).await {
        tracing::warn!(%error, "cannot read the providers added through the API; retried in the background");
    }
    tokio::spawn(token_broker::connect::catalog::watch(
        state.connect().clone(),
        server::shutdown_signal(),
    ));
    let connect = state.connect().clone();
    tokio::spawn(async move { connect.discover_all().await });
    // Always running: a provider added through the API may want it; a
    // pass without such a provider reads nothing.
    tokio::spawn(token_broker::keepalive::run(
        state.connect().clone(),
        server::shutdown_signal(),
    ));
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{bound}");
    let _ = stdout.flush();
    match metrics_listener {
        Some(metrics) => {
            tokio::join!(
                server::run(listener, state.clone(), server::shutdown_signal()),
                server::run_metrics(metrics, state, server::shutdown_signal()),
            );
        }
        None => server::run(listener, state, server::shutdown_signal()).await,
    }
    Ok(())
}

/// Every resource of `DEFAULT_AUDIENCE` must be registered: tokens
/// requested without `resource` would otherwise all be refused.
async fn check_default_audience(state: &AppState) -> Result<(), String> {
    let tags: Vec<_> = state
        .default_audience()
        .iter()
        .map(token_repository::ResourceUri::tag)
        .collect();
    let found = state
        .resources()
        .get_many(&tags)
        .await
        .map_err(|error| format!("cannot read the resource registry: {error}"))?;
    if let Some((uri, _)) = state
        .default_audience()
        .iter()
        .zip(&found)
        .find(|(_, found)| found.is_none())
    {
        tracing::error!(resource = %uri, "DEFAULT_AUDIENCE names an unregistered resource");
        return Err(format!(
            "DEFAULT_AUDIENCE: {:?} is not a registered resource \
             (register it with `token-authority resource add {}`); refusing to start",
            uri.as_str(),
            uri.as_str()
        ));
    }
    Ok(())
}
