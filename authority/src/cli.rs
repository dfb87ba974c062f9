//! The command line: `serve`, and the admin operations for bootstrapping
//! (`user …`, `client …`), which work on Redis directly with the same
//! configuration as the server.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use token_repository::{Scopes, TokenReader as _};
use zeroize::Zeroizing;

use crate::admin::{self, NewClient, NewUser, UserChange};
use crate::config::{Config, VARIABLES};
use crate::problem::Problem;
use crate::state::AppState;
use crate::{logging, server};

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
    /// Connected services.
    #[command(subcommand)]
    Connect(ConnectCommand),
}

#[derive(Debug, Subcommand)]
enum ConnectCommand {
    /// Re-encrypt every stored connection with the current key of
    /// CONNECT_KEYS (after adding a new first key); older keys can be
    /// removed once it reports nothing unreadable.
    Reencrypt,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (prompts for the password without echo).
    Add {
        /// Login name.
        username: String,
        /// A scope the user may be granted (repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Set a user's password (revokes the user's tokens).
    Passwd {
        /// Login name.
        username: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Disable a user (revokes the user's tokens).
    Disable {
        /// Login name.
        username: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Login name.
        username: String,
    },
    /// Remove a user (revokes the user's tokens).
    Remove {
        /// Login name.
        username: String,
    },
    /// List users.
    List,
}

#[derive(Debug, Args)]
struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; prints its generated secret once.
    Add {
        /// Client id.
        client_id: String,
        /// A scope the client may request for itself (repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Allow the client to call the introspection endpoint.
        #[arg(long)]
        introspect: bool,
        /// Allow the client to fetch users' provider access tokens
        /// (connected services).
        #[arg(long)]
        view_access_tokens: bool,
        /// A network (CIDR) or address the client may fetch provider
        /// tokens from (repeatable; none: any address).
        #[arg(long = "allow-ip", value_name = "CIDR")]
        allow_ips: Vec<String>,
        /// A redirect URI for the authorization code flow (repeatable;
        /// matched exactly, loopback `http://127.0.0.1/…` on any port).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (native or browser app): no secret, PKCE only.
        #[arg(long)]
        public: bool,
        /// A first-party application: users are not asked for consent.
        #[arg(long)]
        first_party: bool,
    },
    /// Remove a client (revokes its own tokens).
    Remove {
        /// Client id.
        client_id: String,
    },
    /// List clients.
    List,
}

fn environment_help() -> String {
    let mut help = String::from("Environment (serve and the admin commands):\n");
    for (name, default, meaning) in VARIABLES {
        help.push_str(&format!("  {name:<28} {meaning} [default: {default}]\n"));
    }
    help
}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
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
    let admin_state = |config| AppState::new(config).map_err(|error| error.to_string());
    match command {
        Command::Serve => serve(config).await,
        Command::User(command) => user(&admin_state(config)?, command).await.map_err(describe),
        Command::Client(command) => client(&admin_state(config)?, command)
            .await
            .map_err(describe),
        Command::Connect(ConnectCommand::Reencrypt) => {
            let state = admin_state(config)?;
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
    }
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
    let state = AppState::new(config).map_err(|error| error.to_string())?;
    if let Err(error) = state.store().ping().await {
        // Not fatal: the server answers 503 and recovers when Redis comes.
        tracing::warn!(%error, "Redis is not reachable yet; serving 503 until it is");
    }
    tracing::info!(config = ?state.config(), "starting");
    let connect = state.connect().clone();
    tokio::spawn(async move { connect.discover_all().await });
    if crate::connect::keepalive::wanted(state.connect()) {
        tokio::spawn(crate::connect::keepalive::run(
            state.connect().clone(),
            server::shutdown_signal(),
        ));
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{bound}");
    let _ = stdout.flush();
    server::run(listener, state, server::shutdown_signal()).await;
    Ok(())
}

fn read_password(source: &PasswordSource) -> Result<Zeroizing<String>, Problem> {
    if source.password_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| {
                Problem::invalid_request(format!("cannot read standard input: {error}"))
            })?;
        let trimmed = line.trim_end_matches(['\r', '\n']);
        return Ok(Zeroizing::new(trimmed.to_owned()));
    }
    let first =
        Zeroizing::new(rpassword::prompt_password("Password: ").map_err(|error| {
            Problem::invalid_request(format!("cannot read the password: {error}"))
        })?);
    let second = Zeroizing::new(
        rpassword::prompt_password("Repeat password: ").map_err(|error| {
            Problem::invalid_request(format!("cannot read the password: {error}"))
        })?,
    );
    if first != second {
        return Err(Problem::invalid_request("the passwords differ"));
    }
    Ok(first)
}

fn scopes(scopes: Vec<String>) -> Result<Scopes, Problem> {
    Scopes::from_tokens(scopes).map_err(|error| Problem::invalid_request(error.to_string()))
}

async fn user(state: &AppState, command: UserCommand) -> Result<(), Problem> {
    match command {
        UserCommand::Add {
            username,
            scopes: granted,
            name,
            email,
            password,
        } => {
            let password = read_password(&password)?;
            let user = admin::create_user(
                state,
                NewUser {
                    username,
                    password,
                    name,
                    email,
                    scopes: scopes(granted)?,
                },
            )
            .await?;
            println!("created user {} (subject {})", user.username, user.subject);
        }
        UserCommand::Passwd { username, password } => {
            let password = read_password(&password)?;
            let change = UserChange {
                password: Some(password),
                ..UserChange::default()
            };
            let (_, revoked) = admin::change_user(state, &username, change).await?;
            println!("password changed; {revoked} tokens revoked");
        }
        UserCommand::Disable { username } => {
            let change = UserChange {
                disabled: Some(true),
                ..UserChange::default()
            };
            let (_, revoked) = admin::change_user(state, &username, change).await?;
            println!("user disabled; {revoked} tokens revoked");
        }
        UserCommand::Enable { username } => {
            let change = UserChange {
                disabled: Some(false),
                ..UserChange::default()
            };
            admin::change_user(state, &username, change).await?;
            println!("user enabled");
        }
        UserCommand::Remove { username } => {
            let revoked = admin::remove_user(state, &username).await?;
            println!("user removed; {revoked} tokens revoked");
        }
        UserCommand::List => {
            println!(
                "{:<32} {:<36} {:<9} SCOPE",
                "USERNAME", "SUBJECT", "DISABLED"
            );
            for user in admin::users(state).await? {
                println!(
                    "{:<32} {:<36} {:<9} {}",
                    user.username, user.subject, user.disabled, user.scopes
                );
            }
        }
    }
    Ok(())
}

async fn client(state: &AppState, command: ClientCommand) -> Result<(), Problem> {
    match command {
        ClientCommand::Add {
            client_id,
            scopes: granted,
            introspect,
            view_access_tokens,
            allow_ips,
            redirect_uris,
            public,
            first_party,
        } => {
            let new = NewClient {
                scopes: scopes(granted)?,
                introspect,
                view_access_tokens,
                allowed_ips: admin::parse_networks(&allow_ips)?,
                redirect_uris,
                public,
                first_party,
            };
            let (client, secret) = admin::create_client(state, &client_id, new).await?;
            println!("client_id: {}", client.client_id);
            if let Some(secret) = secret {
                println!("client_secret: {}", secret.as_str());
                eprintln!("The secret is shown only now; store it safely.");
            } else {
                eprintln!("A public client: it has no secret and must use PKCE.");
            }
        }
        ClientCommand::Remove { client_id } => {
            let revoked = admin::remove_client(state, &client_id).await?;
            println!("client removed; {revoked} tokens revoked");
        }
        ClientCommand::List => {
            println!(
                "{:<32} {:<10} {:<12} {:<9} {:<24} SCOPE",
                "CLIENT_ID", "INTROSPECT", "VIEW_TOKENS", "DISABLED", "ALLOWED_IPS"
            );
            for client in admin::clients(state).await? {
                let networks: Vec<String> =
                    client.allowed_ips.iter().map(ToString::to_string).collect();
                let networks = if networks.is_empty() {
                    "any".to_owned()
                } else {
                    networks.join(",")
                };
                println!(
                    "{:<32} {:<10} {:<12} {:<9} {:<24} {}",
                    client.client_id,
                    client.introspect,
                    client.view_access_tokens,
                    client.disabled,
                    networks,
                    client.scopes
                );
            }
        }
    }
    Ok(())
}
