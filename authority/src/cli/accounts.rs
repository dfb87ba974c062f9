//! The account commands: `user …`, `client …` and `resource …`, on Redis
//! directly with the server's configuration.

use std::io::BufRead as _;

use clap::{Args, Subcommand};
use token_repository::Scopes;
use zeroize::Zeroizing;

use crate::admin::{self, NewClient, NewUser, UserChange};
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Subcommand)]
pub(super) enum ResourceCommand {
    /// Register a resource server (a service that validates tokens),
    /// named by the URI it passes to `TokenAuthLayer::audience`.
    Add {
        /// Its URI (absolute, no fragment), e.g. https://orders.example.
        uri: String,
        /// A scope that means something to it (repeatable; none: tokens
        /// for it may carry any scope).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// List resource servers (the authority itself first).
    List,
    /// Remove a resource server (by URI or hex tag); tokens already issued
    /// for it keep working there until they expire.
    Remove {
        /// Its URI or tag.
        uri: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
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
pub(super) struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum ClientCommand {
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
        /// With `--view-access-tokens`: only this provider's tokens
        /// (repeatable; none: every provider's).
        #[arg(
            long = "view-provider",
            value_name = "NAME",
            requires = "view_access_tokens"
        )]
        view_providers: Vec<String>,
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
        /// A registered resource its tokens may name (repeatable; none:
        /// any registered resource).
        #[arg(long = "resource", value_name = "URI")]
        resources: Vec<String>,
    },
    /// Give a client a new generated secret; prints it once.
    RotateSecret {
        /// Client id.
        client_id: String,
        /// Seconds the old secret keeps verifying too (default: none, it
        /// stops at once; at most 30 days).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        grace: u64,
    },
    /// Remove a client (revokes its own tokens).
    Remove {
        /// Client id.
        client_id: String,
    },
    /// List clients.
    List,
}

pub(super) async fn resource(state: &AppState, command: ResourceCommand) -> Result<(), Problem> {
    match command {
        ResourceCommand::Add {
            uri,
            scopes: declared,
        } => {
            let view = admin::add_resource(state, &uri, &scopes(declared)?).await?;
            println!("resource registered: {} (tag {})", view.uri, view.tag);
        }
        ResourceCommand::List => {
            println!("{:<8} {:<48} SCOPE", "TAG", "URI");
            for view in admin::resources(state).await? {
                let scope = if view.authority {
                    "(this authority)".to_owned()
                } else if view.scope.is_empty() {
                    "(any)".to_owned()
                } else {
                    view.scope
                };
                println!("{:<8} {:<48} {scope}", view.tag, view.uri);
            }
        }
        ResourceCommand::Remove { uri } => {
            let view = admin::remove_resource(state, &uri).await?;
            println!("resource removed: {}", view.uri);
        }
    }
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

pub(super) async fn user(state: &AppState, command: UserCommand) -> Result<(), Problem> {
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
                "{:<32} {:<36} {:<9} {:<16} SCOPE",
                "USERNAME", "SUBJECT", "DISABLED", "PROVIDER"
            );
            for user in admin::users(state).await? {
                // The identity provider of a federated account, `-` for a
                // password account.
                let provider = user
                    .identity
                    .as_ref()
                    .map_or("-", |identity| identity.provider.as_str());
                println!(
                    "{:<32} {:<36} {:<9} {:<16} {}",
                    user.username, user.subject, user.disabled, provider, user.scopes
                );
            }
        }
    }
    Ok(())
}

pub(super) async fn client(state: &AppState, command: ClientCommand) -> Result<(), Problem> {
    match command {
        ClientCommand::Add {
            client_id,
            scopes: granted,
            introspect,
            view_access_tokens,
            view_providers,
            allow_ips,
            redirect_uris,
            public,
            first_party,
            resources,
        } => {
            let new = NewClient {
                scopes: scopes(granted)?,
                introspect,
                view_access_tokens,
                view_providers: (!view_providers.is_empty()).then_some(view_providers),
                allowed_ips: admin::parse_networks(&allow_ips)?,
                redirect_uris,
                public,
                first_party,
                resources,
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
        ClientCommand::RotateSecret { client_id, grace } => {
            let grace = std::time::Duration::from_secs(grace);
            let (client, secret) = admin::rotate_secret(state, &client_id, grace).await?;
            match &client.previous_secret {
                Some(previous) => println!(
                    "secret rotated; the old one verifies until {} (Unix seconds)",
                    previous.expires_at.as_unix_secs()
                ),
                None => println!("secret rotated; the old one no longer verifies"),
            }
            println!("client_secret: {}", secret.as_str());
            eprintln!("The secret is shown only now; store it safely.");
        }
        ClientCommand::Remove { client_id } => {
            let revoked = admin::remove_client(state, &client_id).await?;
            println!("client removed; {revoked} tokens revoked");
        }
        ClientCommand::List => {
            println!(
                "{:<32} {:<10} {:<12} {:<24} {:<9} {:<24} SCOPE",
                "CLIENT_ID",
                "INTROSPECT",
                "VIEW_TOKENS",
                "VIEW_PROVIDERS",
                "DISABLED",
                "ALLOWED_IPS"
            );
            for client in admin::clients(state).await? {
                let networks: Vec<String> =
                    client.allowed_ips.iter().map(ToString::to_string).collect();
                let networks = if networks.is_empty() {
                    "any".to_owned()
                } else {
                    networks.join(",")
                };
                // No list: every provider (shown as `all`); with
                // view_access_tokens off, none at all (`-`).
                let providers = match (&client.view_providers, client.view_access_tokens) {
                    (_, false) => "-".to_owned(),
                    (None, true) => "all".to_owned(),
                    (Some(list), true) => list.join(","),
                };
                println!(
                    "{:<32} {:<10} {:<12} {:<24} {:<9} {:<24} {}",
                    client.client_id,
                    client.introspect,
                    client.view_access_tokens,
                    providers,
                    client.disabled,
                    networks,
                    client.scopes
                );
            }
        }
    }
    Ok(())
}
