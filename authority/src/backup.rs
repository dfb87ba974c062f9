//! Export and import (`token-authority export` / `import`): users, clients,
//! connected-service connections and stored credentials as JSON lines,
//! exactly as stored — password and secret hashes, connections and
//! credentials as their sealed (encrypted) envelopes — never a plaintext
//! secret, and never tokens (after an import
//! everyone logs in again).
//!
//! For backups and for moving between Redis deployments. Everything goes
//! through the stores' own functions ([`crate::accounts::Accounts`],
//! [`token_broker::store::ConnectionStore`]), not raw key names, so the
//! format does not depend on the key schema.
//!
//! An import goes into an empty deployment only: it refuses (and writes
//! nothing) when the target holds any user, client, connection or stored
//! credentials, and it checks the whole input before writing anything.
//! Connections and credentials decrypt at the target only with the same
//! `CONNECT_KEYS` and provider names.
//!
//! Format: a first line `{"kind":"export","version":4}`, the deployment
//! key (`{"kind":"deployment_key","key":…}`: client secret digests verify
//! only under it, so an export is as secret as the Redis it came from), then
//! one object a line: `{"kind":"user","record":{…}}`, `{"kind":"client","record":{…}}`,
//! `{"kind":"connection","subject":…,"provider":…,"value":"<stored
//! envelope>","indexed_at":<ms or null>}`, and (format 3) the registered
//! resource servers, `{"kind":"resource","uri":…,"scopes":[…]}` (the
//! authority's own is implicit and not exported), and (format 4) stored
//! credentials of providers of a credentials kind,
//! `{"kind":"credential","subject":…,"provider":…,"value":"<stored
//! envelope>"}`, and the providers added through the admin API,
//! `{"kind":"provider","name":…,"value":"<stored entry, client secret
//! sealed>"}`. A client's allowed resources are part of its record.
//! Formats 1 to 3 are still read.
//!
//! A federated account's record carries its identity (issuer, subject);
//! the import writes the account's identity index entry (`P fid:`, see
//! [`crate::accounts::Identity`]) from it, one per such user, so the
//! index travels with the records and cannot disagree with them.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use token_broker::record::Stored;
use token_repository::{ResourceUri, Scopes, Timestamp};

use crate::accounts::{AccountError, Client, User, valid_client_id, valid_username};
use crate::state::AppState;

/// The format version written (and every earlier one is read).
pub const VERSION: u32 = 4;

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// The account store failed.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// Reading the input or writing the output failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A line of the input is not a valid entry (nothing was written).
    #[error("line {line}: {message}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's content: it holds hashes).
        message: String,
    },
    /// The target already holds accounts or connections (nothing was
    /// written).
    #[error(
        "the target is not empty ({users} users, {clients} clients, {connections} connections, \
         {credentials} credentials, {resources} resources, {providers} providers); import only \
         into an empty deployment"
    )]
    NotEmpty {
        /// Users found.
        users: usize,
        /// Clients found.
        clients: usize,
        /// Connections found.
        connections: usize,
        /// Stored credentials found.
        credentials: usize,
        /// Registered resources found (the authority's own not counted).
        resources: usize,
        /// Providers added through the admin API found.
        providers: usize,
    },
    /// A record appeared in the target while importing (a concurrent
    /// writer); what was imported before it stays.
    #[error("{0} appeared in the target during the import")]
    Conflict(String),
}

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Entry {
    /// The first line.
    Export { version: u32 },
    /// The deployment key (format 2): client secret digests verify, and
    /// account key names resolve, only under it.
    DeploymentKey { key: String },
    /// A user, as stored.
    User { record: User },
    /// A client, as stored.
    Client { record: Client },
    /// A registered resource server (format 3).
    Resource { uri: String, scopes: Scopes },
    /// A connection: its stored value (sealed envelope or reconnect
    /// marker) and its keep-alive position.
    Connection {
        subject: String,
        provider: String,
        value: String,
        indexed_at: Option<u64>,
    },
    /// Stored credentials (format 4): the sealed envelope.
    Credential {
        subject: String,
        provider: String,
        value: String,
    },
    /// A provider added through the admin API (format 4): its stored
    /// entry, the client secret sealed.
    Provider { name: String, value: String },
}

/// What an export or import covered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Users.
    pub users: usize,
    /// Clients.
    pub clients: usize,
    /// Registered resource servers (the authority's own not counted).
    pub resources: usize,
    /// Connections.
    pub connections: usize,
    /// Stored credentials.
    pub credentials: usize,
    /// Providers added through the admin API.
    pub providers: usize,
}

fn line(output: &mut impl Write, entry: &Entry) -> Result<(), BackupError> {
    serde_json::to_writer(&mut *output, entry).map_err(std::io::Error::from)?;
    output.write_all(b"\n")?;
    Ok(())
}

/// Writes every user, client, resource, connection and stored credentials
/// record to `output`.
///
/// # Errors
///
/// Store failures, unreadable records, write failures.
pub async fn export(state: &AppState, output: &mut impl Write) -> Result<Report, BackupError> {
    let mut report = Report::default();
    line(output, &Entry::Export { version: VERSION })?;
    let key = state.accounts().deployment_key().export().await?;
    line(
        output,
        &Entry::DeploymentKey {
            key: key.to_string(),
        },
    )?;
    for record in state.accounts().users().await? {
        line(output, &Entry::User { record })?;
        report.users += 1;
    }
    for record in state.accounts().clients().await? {
        line(output, &Entry::Client { record })?;
        report.clients += 1;
    }
    for resource in registered(state).await? {
        line(
            output,
            &Entry::Resource {
                uri: resource.uri.as_str().to_owned(),
                scopes: resource.scopes,
            },
        )?;
        report.resources += 1;
    }
    for (name, value) in state.connect().stored_providers().await.map_err(catalog)? {
        line(output, &Entry::Provider { name, value })?;
        report.providers += 1;
    }
    let connections = state.connect().store();
    for key in connections.keys().await? {
        let Some((_, provider)) = key.rsplit_once(':') else {
            continue;
        };
        let Some(value) = connections.get_key(&key).await? else {
            continue; // disconnected meanwhile
        };
        let Ok(stored) = Stored::parse(&value) else {
            tracing::warn!(%provider, "an unreadable connection record is not exported");
            continue;
        };
        let subject = stored.subject().to_owned();
        let indexed_at = connections
            .indexed_at(&subject, provider)
            .await?
            .map(Timestamp::as_unix_millis);
        line(
            output,
            &Entry::Connection {
                subject,
                provider: provider.to_owned(),
                value,
                indexed_at,
            },
        )?;
        report.connections += 1;
    }
    for key in connections.credential_keys().await? {
        let Some((_, provider)) = key.rsplit_once(':') else {
            continue;
        };
        let Some(value) = connections.get_key(&key).await? else {
            continue; // removed meanwhile
        };
        let Ok(stored) = Stored::parse(&value) else {
            tracing::warn!(%provider, "an unreadable credentials record is not exported");
            continue;
        };
        line(
            output,
            &Entry::Credential {
                subject: stored.subject().to_owned(),
                provider: provider.to_owned(),
                value,
            },
        )?;
        report.credentials += 1;
    }
    output.flush()?;
    Ok(report)
}

/// A provider registry failure as a backup error.
fn catalog(error: token_broker::CatalogError) -> BackupError {
    match error {
        token_broker::CatalogError::Store(error) => BackupError::Store(error),
        token_broker::CatalogError::Exists(name) => {
            BackupError::Conflict(format!("provider {name:?}"))
        }
        other => BackupError::Accounts(AccountError::Corrupt(other.to_string())),
    }
}

/// The registered resources but the authority's own.
async fn registered(state: &AppState) -> Result<Vec<crate::resources::Resource>, BackupError> {
    let own = state.resources().issuer().tag();
    Ok(state
        .resources()
        .list()
        .await
        .map_err(|error| match error {
            crate::resources::RegistryError::Store(error) => BackupError::Store(error),
            crate::resources::RegistryError::Corrupt(name) => {
                BackupError::Accounts(AccountError::Corrupt(format!("resource {name}")))
            }
        })?
        .into_iter()
        .filter(|resource| resource.tag() != own)
        .collect())
}

/// Checked input, ready to write.
#[derive(Default)]
struct Plan {
    deployment_key: Option<String>,
    users: Vec<User>,
    clients: Vec<Client>,
    resources: Vec<(ResourceUri, Scopes)>,
    connections: Vec<(String, String, String, Option<u64>)>,
    credentials: Vec<(String, String, String)>,
    providers: Vec<(String, String)>,
}

fn invalid(line: usize, message: impl Into<String>) -> BackupError {
    BackupError::Invalid {
        line,
        message: message.into(),
    }
}

fn valid_provider(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
}

/// Reads and checks the whole input.
fn plan(input: impl BufRead) -> Result<Plan, BackupError> {
    let mut plan = Plan::default();
    let mut seen = BTreeSet::new();
    let mut header = false;
    for (index, text) in input.lines().enumerate() {
        let number = index + 1;
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        // serde's message may quote the input; only its category is shown.
        let entry: Entry = serde_json::from_str(&text).map_err(|error| {
            invalid(
                number,
                format!("not an export entry ({:?} error)", error.classify()),
            )
        })?;
        if !header {
            match entry {
                Entry::Export {
                    version: 1..=VERSION,
                } => {
                    header = true;
                    continue;
                }
                Entry::Export { version } => {
                    return Err(invalid(
                        number,
                        format!("format version {version} is not supported (1 to {VERSION})"),
                    ));
                }
                _ => return Err(invalid(number, "the export header line is missing")),
            }
        }
        match entry {
            Entry::Export { .. } => return Err(invalid(number, "a second header line")),
            Entry::DeploymentKey { key } => {
                if plan.deployment_key.replace(key).is_some() {
                    return Err(invalid(number, "a second deployment key"));
                }
            }
            Entry::User { record } => {
                if !valid_username(&record.username) || record.subject.is_empty() {
                    return Err(invalid(
                        number,
                        "a user with an invalid username or subject",
                    ));
                }
                if !seen.insert(format!("user {}", record.username)) {
                    return Err(invalid(number, format!("user {:?} twice", record.username)));
                }
                if let Some(identity) = &record.identity
                    && !seen.insert(format!(
                        "identity {:?} {:?}",
                        identity.issuer, identity.subject
                    ))
                {
                    return Err(invalid(
                        number,
                        "two users with one federated identity (issuer and subject)",
                    ));
                }
                plan.users.push(record);
            }
            Entry::Client { record } => {
                if !valid_client_id(&record.client_id) {
                    return Err(invalid(number, "a client with an invalid id"));
                }
                if !seen.insert(format!("client {}", record.client_id)) {
                    return Err(invalid(
                        number,
                        format!("client {:?} twice", record.client_id),
                    ));
                }
                plan.clients.push(record);
            }
            Entry::Resource { uri, scopes } => {
                let uri = ResourceUri::parse(&uri)
                    .map_err(|error| invalid(number, format!("a resource: {error}")))?;
                if !seen.insert(format!("resource {}", uri.tag())) {
                    return Err(invalid(number, "a resource twice (or two with one tag)"));
                }
                plan.resources.push((uri, scopes));
            }
            Entry::Connection {
                subject,
                provider,
                value,
                indexed_at,
            } => {
                if !valid_provider(&provider) {
                    return Err(invalid(
                        number,
                        "a connection with an invalid provider name",
                    ));
                }
                match Stored::parse(&value) {
                    Ok(stored) if stored.subject() == subject => {}
                    _ => {
                        return Err(invalid(
                            number,
                            "a connection whose stored value is unreadable or names another subject",
                        ));
                    }
                }
                if !seen.insert(format!("connection {subject} {provider}")) {
                    return Err(invalid(number, format!("connection to {provider:?} twice")));
                }
                plan.connections
                    .push((subject, provider, value, indexed_at));
            }
            Entry::Credential {
                subject,
                provider,
                value,
            } => {
                if !valid_provider(&provider) {
                    return Err(invalid(number, "credentials with an invalid provider name"));
                }
                if !matches!(Stored::parse(&value), Ok(stored @ Stored::Sealed { .. }) if stored.subject() == subject)
                {
                    return Err(invalid(
                        number,
                        "credentials whose stored value is unreadable or names another subject",
                    ));
                }
                if !seen.insert(format!("credential {subject} {provider}")) {
                    return Err(invalid(
                        number,
                        format!("credentials for {provider:?} twice"),
                    ));
                }
                plan.credentials.push((subject, provider, value));
            }
            Entry::Provider { name, value } => {
                if let Err(error) = token_broker::connect::catalog::check_exported(&name, &value) {
                    return Err(invalid(number, error.to_string()));
                }
                if !seen.insert(format!("provider {name}")) {
                    return Err(invalid(number, format!("provider {name:?} twice")));
                }
                plan.providers.push((name, value));
            }
        }
    }
    if !header {
        return Err(invalid(1, "empty input: no export header line"));
    }
    Ok(plan)
}

/// Writes an export read from `input` into the (empty) target.
///
/// # Errors
///
/// [`BackupError::Invalid`] for bad input and [`BackupError::NotEmpty`] for
/// a target with data (both before anything is written); store failures.
pub async fn import(state: &AppState, input: impl BufRead) -> Result<Report, BackupError> {
    let plan = plan(input)?;
    let users = state.accounts().users().await?.len();
    let clients = state.accounts().clients().await?.len();
    let connections = state.connect().store().keys().await?.len();
    let credentials = state.connect().store().credential_keys().await?.len();
    let resources = registered(state).await?.len();
    let providers = state
        .connect()
        .stored_provider_count()
        .await
        .map_err(catalog)?;
    if users + clients + connections + credentials + resources + providers > 0 {
        return Err(BackupError::NotEmpty {
            users,
            clients,
            connections,
            credentials,
            resources,
            providers,
        });
    }
    if let Some(key) = &plan.deployment_key {
        state
            .accounts()
            .deployment_key()
            .install(key)
            .await
            .map_err(AccountError::from)?;
    }
    let mut report = Report::default();
    // Resources first: the clients name them.
    for (uri, scopes) in &plan.resources {
        let registered = state
            .resources()
            .add(uri, scopes)
            .await
            .map_err(|error| match error {
                crate::resources::RegistryError::Store(error) => BackupError::Store(error),
                crate::resources::RegistryError::Corrupt(name) => BackupError::Conflict(name),
            })?;
        if registered != crate::resources::Registered::Added {
            return Err(BackupError::Conflict(format!(
                "resource {:?}",
                uri.as_str()
            )));
        }
        report.resources += 1;
    }
    for (name, value) in &plan.providers {
        state
            .connect()
            .import_provider(name, value)
            .await
            .map_err(catalog)?;
        report.providers += 1;
    }
    for user in &plan.users {
        if !state.accounts().create_user(user).await? {
            return Err(BackupError::Conflict(format!("user {:?}", user.username)));
        }
        // A federated account's index entry (`P fid:`), named under the
        // deployment key installed above: its next sign-in finds it.
        if let Some(identity) = &user.identity {
            state
                .accounts()
                .link_identity(identity, &user.username)
                .await?;
        }
        report.users += 1;
    }
    for client in &plan.clients {
        if !state.accounts().create_client(client).await? {
            return Err(BackupError::Conflict(format!(
                "client {:?}",
                client.client_id
            )));
        }
        report.clients += 1;
    }
    let store = state.connect().store();
    for (subject, provider, value, indexed_at) in &plan.connections {
        store
            .put(
                subject,
                provider,
                value,
                indexed_at.map(Timestamp::from_unix_millis),
            )
            .await?;
        report.connections += 1;
    }
    for (subject, provider, value) in &plan.credentials {
        store
            .set_key(&store.credential_key(subject, provider), value)
            .await?;
        report.credentials += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bad input is refused with its line number and without echoing it.
    #[test]
    fn input_is_checked_before_anything_is_written() {
        let header = "{\"kind\":\"export\",\"version\":1}\n";
        assert!(matches!(
            plan("{\"kind\":\"export\",\"version\":5}\n".as_bytes()),
            Err(BackupError::Invalid { line: 1, .. })
        ));
        assert!(matches!(
            plan("".as_bytes()),
            Err(BackupError::Invalid { .. })
        ));
        let secret = format!("{header}{{\"kind\":\"user\",\"record\":\"$argon2id$secret\"}}\n");
        let error = plan(secret.as_bytes()).err().expect("refused");
        assert!(matches!(error, BackupError::Invalid { line: 2, .. }));
        assert!(!error.to_string().contains("secret"), "{error}");
        let foreign = format!(
            "{header}{{\"kind\":\"connection\",\"subject\":\"a\",\"provider\":\"p\",\
             \"value\":\"{{\\\"t\\\":\\\"reconnect\\\",\\\"sub\\\":\\\"b\\\",\\\"reason\\\":\\\"x\\\",\\\"at\\\":1}}\",\
             \"indexed_at\":null}}\n"
        );
        assert!(matches!(
            plan(foreign.as_bytes()),
            Err(BackupError::Invalid { line: 2, .. })
        ));
        let own = foreign.replace("\\\"sub\\\":\\\"b\\\"", "\\\"sub\\\":\\\"a\\\"");
        assert_eq!(plan(own.as_bytes()).expect("valid").connections.len(), 1);
    }

    /// Two users with one federated identity are refused: the identity
    /// index names one account.
    #[test]
    fn an_identity_belongs_to_one_user() {
        let user = |username: &str, subject: &str| {
            let now = Timestamp::now();
            let record = User {
                subject: subject.to_owned(),
                username: username.to_owned(),
                name: None,
                email: None,
                scopes: Scopes::default(),
                password_hash: crate::accounts::NO_PASSWORD.to_owned(),
                disabled: false,
                created_at: now,
                updated_at: now,
                identity: Some(crate::accounts::Identity {
                    provider: "idp".to_owned(),
                    issuer: "https://idp.example".to_owned(),
                    subject: "alice".to_owned(),
                }),
            };
            format!(
                "{}\n",
                serde_json::to_string(&Entry::User { record }).expect("json")
            )
        };
        let header = "{\"kind\":\"export\",\"version\":3}\n";
        let one = format!("{header}{}", user("idp.one", "s1"));
        let planned = plan(one.as_bytes()).expect("valid");
        assert_eq!(
            planned.users[0]
                .identity
                .as_ref()
                .map(|i| i.subject.as_str()),
            Some("alice")
        );
        let two = format!("{one}{}", user("idp.two", "s2"));
        assert!(matches!(
            plan(two.as_bytes()),
            Err(BackupError::Invalid { line: 3, .. })
        ));
    }

    /// Format 3 carries registered resources; a malformed or repeated one
    /// is refused before anything is written.
    #[test]
    fn resources_are_read_and_checked() {
        let header = "{\"kind\":\"export\",\"version\":3}\n";
        let resource = |uri: &str| {
            format!("{{\"kind\":\"resource\",\"uri\":\"{uri}\",\"scopes\":[\"read\"]}}\n")
        };
        let one = format!("{header}{}", resource("https://orders.example"));
        let planned = plan(one.as_bytes()).expect("valid");
        assert_eq!(planned.resources.len(), 1);
        assert_eq!(planned.resources[0].0.as_str(), "https://orders.example");
        assert!(planned.resources[0].1.contains("read"));
        let twice = format!("{one}{}", resource("https://ORDERS.example/"));
        assert!(matches!(
            plan(twice.as_bytes()),
            Err(BackupError::Invalid { line: 3, .. })
        ));
        let relative = format!("{header}{}", resource("/orders"));
        assert!(matches!(
            plan(relative.as_bytes()),
            Err(BackupError::Invalid { line: 2, .. })
        ));
    }
}
