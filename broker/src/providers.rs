//! The `[[providers]]` tables of the configuration file: which external
//! services users may connect, validated ([`parse`]), and where a
//! provider's endpoints are ([`Endpoints`]).
//!
//! ```toml
//! [[providers]]
//! name = "orcid"                                  # a-z 0-9 _ -, unique
//! display_name = "ORCID"
//! logo_url = "https://orcid.org/logo.svg"
//! issuer = "https://orcid.org"                    # discovery, or the three URLs below
//! # authorize_url = "https://…/authorize"
//! # token_url = "https://…/token"
//! # revocation_url = "https://…/revoke"           # RFC 7009, optional
//! client_id = "APP-123"
//! client_secret_file = "/run/secrets/orcid"       # or client_secret, or CONNECT_PROVIDER_ORCID_CLIENT_SECRET
//! scopes = ["openid", "offline_access"]
//! authorize_params = { idp = "google" }           # extra authorize parameters
//! default_expires_in = 3600                       # when the provider sends no expires_in
//! keepalive_after = 604800                        # refresh idle connections after a week
//! refresh_token_expires_in = 2592000              # refresh tokens live 30 days (the provider's refresh_expires_in wins)
//! enabled = true
//! # allow_insecure_http = true                    # tests only: plain http:// to a non-loopback host
//! ```
//!
//! Endpoints (issuer, authorize, token, revocation, and the discovered ones)
//! must be `https://`, unless the host is loopback (`127.0.0.1`, `[::1]`,
//! `localhost`) or the provider sets `allow_insecure_http = true`; the
//! discovered ones are checked in [`crate::registry`].

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use token_settings::ConfigError;
use zeroize::Zeroizing;

use crate::credentials::{CredentialKind, CredentialProvider};

/// Parameters the authority sets itself; `authorize_params` may not.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

/// Path segments next to `/v1/connect/{provider}` that are routes.
const RESERVED_NAMES: &[&str] = &["callback", "tokens", "credentials"];

/// How the authority authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form.
    ClientSecretPost,
    /// A public client: `client_id` in the form, PKCE only.
    None,
}

/// One configured provider, validated.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Unique name, used in URLs and keys.
    pub name: String,
    /// Name shown to users.
    pub display_name: String,
    /// Logo shown to users.
    pub logo_url: Option<String>,
    /// OpenID Connect issuer (discovery), without a trailing slash.
    pub issuer: Option<String>,
    /// Explicit authorization endpoint.
    pub authorize_url: Option<String>,
    /// Explicit token endpoint.
    pub token_url: Option<String>,
    /// Explicit revocation endpoint (RFC 7009).
    pub revocation_url: Option<String>,
    /// The authority's client id at the provider.
    pub client_id: String,
    /// Its secret (empty for [`AuthMethod::None`]).
    pub client_secret: Zeroizing<String>,
    /// Token endpoint authentication.
    pub auth_method: AuthMethod,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// The callback URL registered at the provider; `None`: the issuer's
    /// `/v1/connect/callback`.
    pub redirect_url: Option<String>,
    /// Access token lifetime assumed when the provider sends no
    /// `expires_in`.
    pub default_expires_in: Duration,
    /// Extra authorize parameters (an IdP hint, `prompt`, …).
    pub authorize_params: Vec<(String, String)>,
    /// Offered to users; a disabled provider takes no new connections.
    pub enabled: bool,
    /// Refresh connections not refreshed for this long (keep-alive).
    pub keepalive_after: Option<Duration>,
    /// How long a refresh token lives from when it was issued, as the
    /// provider documents it (`refresh_token_expires_in`); a token
    /// response's own `refresh_expires_in` wins over it.
    pub refresh_token_expires_in: Option<Duration>,
    /// `allow_insecure_http`: plain `http://` endpoints on hosts other
    /// than loopback are accepted (for tests; never for a real provider).
    pub allow_insecure_http: bool,
    /// Users may sign in with it (`login = true`), and how
    /// ([`crate::login`]).
    pub login: Option<crate::login::LoginConfig>,
    /// Also a connected service (`connect`, default true): offered by
    /// `GET /v1/connect`, and a sign-in keeps its tokens. `false`: sign-in
    /// only.
    pub connect: bool,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("revocation_url", &self.revocation_url)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("scopes", &self.scopes)
            .field("enabled", &self.enabled)
            .field("keepalive_after", &self.keepalive_after)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("login", &self.login)
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    Text(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    display_name: Option<String>,
    logo_url: Option<String>,
    issuer: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revocation_url: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    token_endpoint_auth_method: Option<AuthMethod>,
    scopes: Option<ScopeList>,
    redirect_url: Option<String>,
    default_expires_in: Option<u64>,
    #[serde(default)]
    authorize_params: std::collections::BTreeMap<String, String>,
    enabled: Option<bool>,
    keepalive_after: Option<u64>,
    refresh_token_expires_in: Option<u64>,
    allow_insecure_http: Option<bool>,
    login: Option<bool>,
    #[serde(default)]
    login_options: Vec<crate::login::LoginOption>,
    provision: Option<bool>,
    #[serde(default)]
    default_scopes: Vec<String>,
    scope_map: Option<crate::login::ScopeMap>,
    connect: Option<bool>,
}

/// Whether `name` is a usable provider name: 1–32 of `a-z 0-9 _ -`,
/// starting with a letter or digit, not a reserved route segment.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !RESERVED_NAMES.contains(&name)
}

/// How every provider's secret variable starts ([`secret_variable`]).
pub const SECRET_VARIABLE_PREFIX: &str = "CONNECT_PROVIDER_";

/// The environment variable that may hold `provider`'s client secret:
/// `CONNECT_PROVIDER_<NAME>_CLIENT_SECRET`, the name upper-cased with `-`
/// as `_`.
#[must_use]
pub fn secret_variable(provider: &str) -> String {
    format!(
        "{SECRET_VARIABLE_PREFIX}{}_CLIENT_SECRET",
        provider.to_ascii_uppercase().replace('-', "_")
    )
}

/// Whether `url` may be called over plain HTTP: a loopback host
/// (`127.0.0.0/8`, `::1`, `localhost`), or `allow_insecure_http`.
pub(crate) fn plain_http_allowed(url: &Url, allow_insecure_http: bool) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allow_insecure_http
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks that `url` is an absolute http(s) URL; a provider `endpoint`
/// (not a page such as the logo or the authority's own callback) must be
/// `https://` unless [`plain_http_allowed`].
fn check_url(
    field: &str,
    url: &str,
    endpoint: bool,
    allow_insecure_http: bool,
) -> Result<(), ConfigError> {
    let parsed =
        Url::parse(url).map_err(|_| ConfigError::new(field, "expected an absolute URL"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if !endpoint || plain_http_allowed(&parsed, allow_insecure_http) => Ok(()),
        "http" => Err(ConfigError::new(
            field,
            "expected https:// (plain http:// only to a loopback host, or with \
             allow_insecure_http = true for tests)",
        )),
        _ => Err(ConfigError::new(
            field,
            "expected an http:// or https:// URL",
        )),
    }
}

/// The validated `[[providers]]` tables: OAuth providers and providers
/// of a credentials kind ([`crate::credentials`]), in file order each,
/// with names unique across both.
#[derive(Debug, Clone, Default)]
pub struct ProviderSet {
    /// Providers users connect with OAuth (no `kind`, or `kind = "oauth"`).
    pub oauth: Vec<ProviderConfig>,
    /// Providers whose users store a password or a key.
    pub credentials: Vec<CredentialProvider>,
}

/// Validates the `[[providers]]` tables: each is OAuth (no `kind`, or
/// `kind = "oauth"`) or of a credentials kind (`kind = "password"` or
/// `"api_key"`, see [`crate::credentials`]). `secret_env` reads OAuth
/// client secrets from the environment (it wins over the file).
///
/// # Errors
///
/// [`ConfigError`] naming the table and field (`providers[1].client_id`),
/// for duplicate names (across both kinds) too.
pub fn parse_all(
    tables: &[toml::Table],
    secret_env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderSet, ConfigError> {
    let mut set = ProviderSet::default();
    let mut names: Vec<String> = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let at = |field: &str| format!("providers[{index}].{field}");
        let kind = match table.get("kind") {
            None => None,
            Some(toml::Value::String(kind)) => Some(kind.as_str()),
            Some(_) => return Err(ConfigError::new(&at("kind"), "expected a string")),
        };
        let name = match kind {
            None | Some("oauth") => {
                let mut table = table.clone();
                table.remove("kind");
                let config = parse_oauth(index, &table, secret_env, &names)?;
                let name = config.name.clone();
                set.oauth.push(config);
                name
            }
            Some(kind) if CredentialKind::is_credentials(kind) => {
                let provider = crate::credentials::parse_provider(index, table)?;
                check_name(index, &provider.name, &names)?;
                let name = provider.name.clone();
                set.credentials.push(provider);
                name
            }
            Some(_) => {
                return Err(ConfigError::new(
                    &at("kind"),
                    "expected \"oauth\" (the default), \"password\" or \"api_key\"",
                ));
            }
        };
        names.push(name);
    }
    Ok(set)
}

/// The OAuth providers of the tables (every table must be OAuth).
///
/// # Errors
///
/// Like [`parse_all`]; a table of a credentials kind is refused too.
pub fn parse(
    tables: &[toml::Table],
    secret_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let set = parse_all(tables, secret_env)?;
    if let Some(provider) = set.credentials.first() {
        return Err(ConfigError::new(
            &format!("providers.{}", provider.name),
            "a provider of a credentials kind where only OAuth providers are expected",
        ));
    }
    Ok(set.oauth)
}

/// Checks the name of table `index` against the rules and the names of
/// the tables before it (`names`, by index).
fn check_name(index: usize, name: &str, names: &[String]) -> Result<(), ConfigError> {
    let at = |field: &str| format!("providers[{index}].{field}");
    if !valid_name(name) {
        return Err(ConfigError::new(
            &at("name"),
            format!(
                "{name:?}: expected 1 to 32 characters of a-z 0-9 _ - (not `callback`, `tokens` or `credentials`)"
            ),
        ));
    }
    if let Some(first) = names.iter().position(|other| other == name) {
        return Err(ConfigError::new(
            &at("name"),
            format!(
                "{name:?} is already the name of providers[{first}]; provider names must be unique"
            ),
        ));
    }
    Ok(())
}

/// Validates table `index`, an OAuth provider.
fn parse_oauth(
    index: usize,
    table: &toml::Table,
    secret_env: &dyn Fn(&str) -> Option<String>,
    names: &[String],
) -> Result<ProviderConfig, ConfigError> {
    let at = |field: &str| format!("providers[{index}].{field}");
    let raw: RawProvider =
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|error: toml::de::Error| {
                ConfigError::new(&format!("providers[{index}]"), error.message().to_owned())
            })?;
    check_name(index, &raw.name, names)?;
    let issuer = raw
        .issuer
        .as_deref()
        .map(|issuer| issuer.trim_end_matches('/').to_owned());
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    for (field, url) in [
        ("issuer", &issuer),
        ("authorize_url", &raw.authorize_url),
        ("token_url", &raw.token_url),
        ("revocation_url", &raw.revocation_url),
    ] {
        if let Some(url) = url {
            check_url(&at(field), url, true, allow_insecure_http)?;
        }
    }
    if issuer.is_none() && (raw.authorize_url.is_none() || raw.token_url.is_none()) {
        return Err(ConfigError::new(
            &at("issuer"),
            "set `issuer` (OpenID Connect discovery) or both `authorize_url` and `token_url`",
        ));
    }
    if raw.client_id.is_empty() {
        return Err(ConfigError::new(&at("client_id"), "must not be empty"));
    }
    let auth_method = raw
        .token_endpoint_auth_method
        .unwrap_or(AuthMethod::ClientSecretBasic);
    let variable = secret_variable(&raw.name);
    let secret = match (
        secret_env(&variable),
        raw.client_secret,
        raw.client_secret_file,
    ) {
        (Some(secret), _, _) => Some(secret),
        (None, Some(_), Some(_)) => {
            return Err(ConfigError::new(
                &at("client_secret"),
                "set client_secret or client_secret_file, not both",
            ));
        }
        (None, Some(secret), None) => Some(secret),
        (None, None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|error| {
                    ConfigError::new(
                        &at("client_secret_file"),
                        format!("cannot read {path}: {error}"),
                    )
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        (None, None, None) => None,
    };
    let client_secret = match (auth_method, secret) {
        (AuthMethod::None, None) => Zeroizing::new(String::new()),
        (AuthMethod::None, Some(_)) => {
            return Err(ConfigError::new(
                &at("client_secret"),
                "a public client (token_endpoint_auth_method = \"none\") has no secret",
            ));
        }
        (_, Some(secret)) if !secret.is_empty() => Zeroizing::new(secret),
        _ => {
            return Err(ConfigError::new(
                &at("client_secret"),
                format!("no secret: set client_secret, client_secret_file or {variable}"),
            ));
        }
    };
    let scopes = match raw.scopes {
        None => Vec::new(),
        Some(ScopeList::Text(text)) => text.split_whitespace().map(str::to_owned).collect(),
        Some(ScopeList::List(list)) => list,
    };
    if scopes
        .iter()
        .any(|scope| scope.is_empty() || scope.contains(char::is_whitespace))
    {
        return Err(ConfigError::new(
            &at("scopes"),
            "scopes are non-empty words without spaces",
        ));
    }
    if let Some(url) = &raw.redirect_url {
        check_url(&at("redirect_url"), url, false, false)?;
    }
    if let Some(url) = &raw.logo_url {
        check_url(&at("logo_url"), url, false, false)?;
    }
    if let Some(reserved) = raw
        .authorize_params
        .keys()
        .find(|key| RESERVED_PARAMS.contains(&key.as_str()))
    {
        return Err(ConfigError::new(
            &at("authorize_params"),
            format!("{reserved:?} is set by the authority itself"),
        ));
    }
    let default_expires_in = raw.default_expires_in.unwrap_or(3600);
    if !(1..=31_536_000).contains(&default_expires_in) {
        return Err(ConfigError::new(
            &at("default_expires_in"),
            "expected seconds from 1 to 31536000",
        ));
    }
    let keepalive_after = match raw.keepalive_after {
        None | Some(0) => None,
        Some(seconds) if seconds <= 31_536_000 => Some(Duration::from_secs(seconds)),
        Some(_) => {
            return Err(ConfigError::new(
                &at("keepalive_after"),
                "expected seconds up to 31536000 (0: off)",
            ));
        }
    };
    let refresh_token_expires_in = match raw.refresh_token_expires_in {
        None => None,
        Some(seconds) if (1..=315_360_000).contains(&seconds) => Some(Duration::from_secs(seconds)),
        Some(_) => {
            return Err(ConfigError::new(
                &at("refresh_token_expires_in"),
                "expected seconds from 1 to 315360000",
            ));
        }
    };
    let login = crate::login::parse(
        crate::login::RawLogin {
            login: raw.login,
            login_options: raw.login_options,
            provision: raw.provision,
            default_scopes: raw.default_scopes,
            scope_map: raw.scope_map,
        },
        index,
        issuer.as_deref(),
        RESERVED_PARAMS,
    )?;
    let connect = raw.connect.unwrap_or(true);
    if !connect && login.is_none() {
        return Err(ConfigError::new(
            &at("connect"),
            "a provider that is not a connected service must be a sign-in provider (login = true)",
        ));
    }
    Ok(ProviderConfig {
        display_name: raw.display_name.unwrap_or_else(|| raw.name.clone()),
        name: raw.name,
        logo_url: raw.logo_url,
        issuer,
        authorize_url: raw.authorize_url,
        token_url: raw.token_url,
        revocation_url: raw.revocation_url,
        client_id: raw.client_id,
        client_secret,
        auth_method,
        scopes,
        redirect_url: raw.redirect_url,
        default_expires_in: Duration::from_secs(default_expires_in),
        authorize_params: raw.authorize_params.into_iter().collect(),
        enabled: raw.enabled.unwrap_or(true),
        keepalive_after,
        refresh_token_expires_in,
        allow_insecure_http,
        login,
        connect,
    })
}

/// Where a provider's endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Authorization endpoint (the browser goes there).
    pub authorization: Url,
    /// Token endpoint (code exchange, refresh).
    pub token: Url,
    /// Revocation endpoint (RFC 7009), if any.
    pub revocation: Option<Url>,
    /// The issuer, when known (checked against the callback's `iss`).
    pub issuer: Option<String>,
    /// The provider always sends `iss` with the callback (RFC 9207).
    pub iss_parameter_required: bool,
    /// The provider's JSON Web Key Set (OpenID Connect discovery's
    /// `jwks_uri`): the keys of its ID tokens.
    pub jwks: Option<Url>,
}

/// The `[[providers]]` tables of a TOML text (for tests).
#[cfg(test)]
pub(crate) fn tables(text: &str) -> Vec<toml::Table> {
    let table: toml::Table = text.parse().expect("toml");
    table["providers"]
        .as_array()
        .expect("array")
        .iter()
        .map(|value| value.as_table().expect("table").clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const GOOD: &str = r#"
        [[providers]]
        name = "orcid"
        display_name = "ORCID"
        issuer = "http://127.0.0.1:9/"
        client_id = "app"
        client_secret = "s3cret"
        scopes = "openid offline_access"
        authorize_params = { idp = "google" }
        keepalive_after = 60
        refresh_token_expires_in = 86400

        [[providers]]
        name = "github"
        authorize_url = "https://github.com/login/oauth/authorize"
        token_url = "http://127.0.0.1:9/token"
        client_id = "gh"
        client_secret = "x"
        token_endpoint_auth_method = "client_secret_post"
        scopes = ["repo"]
        enabled = false
    "#;

    /// A valid registry: defaults filled in, issuer normalised, scopes from
    /// a string or a list, extra parameters kept, secrets hidden in Debug.
    #[test]
    fn valid_providers() {
        let providers = parse(&tables(GOOD), &no_env).expect("valid");
        assert_eq!(providers.len(), 2);
        let orcid = &providers[0];
        assert_eq!(orcid.issuer.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(orcid.scopes, ["openid", "offline_access"]);
        assert_eq!(orcid.authorize_params, [("idp".into(), "google".into())]);
        assert_eq!(orcid.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(orcid.default_expires_in, Duration::from_secs(3600));
        assert_eq!(orcid.keepalive_after, Some(Duration::from_secs(60)));
        assert_eq!(
            orcid.refresh_token_expires_in,
            Some(Duration::from_secs(86_400))
        );
        assert!(orcid.enabled);
        let github = &providers[1];
        assert_eq!(github.display_name, "github");
        assert_eq!(github.auth_method, AuthMethod::ClientSecretPost);
        assert!(!github.enabled);
        assert_eq!(github.refresh_token_expires_in, None);
        assert!(!format!("{providers:?}").contains("s3cret"));
    }

    /// Tables of kind `password` and `api_key` are credentials providers,
    /// with none of OAuth's fields; names are unique across both kinds;
    /// an unknown kind is named.
    #[test]
    fn credentials_kinds() {
        let text = r#"
            [[providers]]
            name = "orcid"
            kind = "oauth"
            issuer = "https://orcid.org"
            client_id = "a"
            client_secret = "x"
            [[providers]]
            name = "webdav"
            kind = "password"
            display_name = "WebDAV"
            [[providers]]
            name = "zenodo"
            kind = "api_key"
            enabled = false
        "#;
        let set = parse_all(&tables(text), &no_env).expect("valid");
        assert_eq!(set.oauth.len(), 1);
        let kinds: Vec<_> = set
            .credentials
            .iter()
            .map(|p| (p.name.as_str(), p.display_name.as_str(), p.kind, p.enabled))
            .collect();
        assert_eq!(
            kinds,
            [
                ("webdav", "WebDAV", CredentialKind::Password, true),
                ("zenodo", "zenodo", CredentialKind::ApiKey, false)
            ]
        );
        assert!(parse(&tables(text), &no_env).is_err(), "OAuth only");
        let cases = [
            (
                "[[providers]]\nname = \"w\"\nkind = \"password\"\nissuer = \"https://x\"\n",
                "providers[0]",
            ),
            (
                "[[providers]]\nname = \"w\"\nkind = \"saml\"\n",
                "providers[0].kind",
            ),
            (
                "[[providers]]\nname = \"w\"\nkind = 1\n",
                "providers[0].kind",
            ),
            (
                "[[providers]]\nname = \"credentials\"\nkind = \"api_key\"\n",
                "providers[0].name",
            ),
            (
                "[[providers]]\nname = \"w\"\nkind = \"api_key\"\n[[providers]]\nname = \"w\"\nissuer = \"https://x\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
                "providers[1].name",
            ),
            (
                "[[providers]]\nname = \"w\"\nkind = \"api_key\"\nlogo_url = \"javascript:x\"\n",
                "providers[0].logo_url",
            ),
        ];
        for (text, variable) in cases {
            let error = parse_all(&tables(text), &no_env).unwrap_err();
            assert_eq!(error.variable, variable, "{text}: {error}");
        }
    }

    /// Duplicate names stop the start-up, naming the field and the first
    /// provider with that name.
    #[test]
    fn unique_names() {
        let text = r#"
            [[providers]]
            name = "orcid"
            issuer = "http://127.0.0.1:9"
            client_id = "a"
            client_secret = "x"
            [[providers]]
            name = "orcid"
            issuer = "http://127.0.0.1:10"
            client_id = "b"
            client_secret = "y"
        "#;
        let error = parse(&tables(text), &no_env).unwrap_err();
        assert_eq!(error.variable, "providers[1].name");
        assert!(error.problem.contains("providers[0]"), "{error}");
        assert!(error.problem.contains("unique"), "{error}");
    }

    /// Every invalid field is named: unknown keys, names, endpoints,
    /// secrets, reserved parameters.
    #[test]
    fn invalid_fields() {
        let base =
            |extra: &str| format!("[[providers]]\nname = \"p\"\nclient_id = \"c\"\n{extra}\n");
        let cases = [
            (
                base("issuer = \"https://x\"\nclient_secret = \"s\"\nclent = 1"),
                "providers[0]",
            ),
            (base("issuer = \"https://x\""), "providers[0].client_secret"),
            (base("client_secret = \"s\""), "providers[0].issuer"),
            (
                base("client_secret = \"s\"\nauthorize_url = \"https://x/a\""),
                "providers[0].issuer",
            ),
            (
                base("issuer = \"ftp://x\"\nclient_secret = \"s\""),
                "providers[0].issuer",
            ),
            (
                base(
                    "issuer = \"https://x\"\nclient_secret = \"s\"\nauthorize_params = { state = \"x\" }",
                ),
                "providers[0].authorize_params",
            ),
            (
                base("issuer = \"https://x\"\nclient_secret = \"s\"\nclient_secret_file = \"/f\""),
                "providers[0].client_secret",
            ),
            (
                base("issuer = \"https://x\"\nclient_secret_file = \"/nonexistent/secret\""),
                "providers[0].client_secret_file",
            ),
            (
                base("issuer = \"https://x\"\nclient_secret = \"s\"\nscopes = [\"a b\"]"),
                "providers[0].scopes",
            ),
            (
                base("issuer = \"https://x\"\nclient_secret = \"s\"\nrefresh_token_expires_in = 0"),
                "providers[0].refresh_token_expires_in",
            ),
        ];
        for (text, variable) in cases {
            let error = parse(&tables(&text), &no_env).unwrap_err();
            assert_eq!(error.variable, variable, "{text}: {error}");
        }
        for name in ["tokens", "callback", "Upper", "", "-x", "a/b"] {
            let text = format!(
                "[[providers]]\nname = \"{name}\"\nissuer = \"https://x\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
            );
            let error = parse(&tables(&text), &no_env).unwrap_err();
            assert_eq!(error.variable, "providers[0].name", "{name}");
        }
    }

    /// Endpoints must be https://: plain http:// is refused for every
    /// endpoint field unless the host is loopback or the provider sets
    /// `allow_insecure_http`; pages (logo, callback) may be http://.
    #[test]
    fn plain_http_endpoints_are_refused() {
        let provider = |endpoints: &str, extra: &str| {
            format!(
                "[[providers]]\nname = \"p\"\nclient_id = \"c\"\nclient_secret = \"s\"\n{endpoints}\n{extra}\n"
            )
        };
        for (endpoints, field) in [
            ("issuer = \"http://idp.example\"", "issuer"),
            (
                "authorize_url = \"http://idp.example/a\"\ntoken_url = \"https://idp.example/t\"",
                "authorize_url",
            ),
            (
                "authorize_url = \"https://idp.example/a\"\ntoken_url = \"http://idp.example/t\"",
                "token_url",
            ),
            (
                "issuer = \"https://idp.example\"\nrevocation_url = \"http://idp.example/r\"",
                "revocation_url",
            ),
            ("issuer = \"http://127.0.0.1.example\"", "issuer"),
        ] {
            let error = parse(&tables(&provider(endpoints, "")), &no_env).unwrap_err();
            assert_eq!(
                error.variable,
                format!("providers[0].{field}"),
                "{endpoints}"
            );
            assert!(error.problem.contains("https://"), "{error}");
            let allowed = parse(
                &tables(&provider(endpoints, "allow_insecure_http = true")),
                &no_env,
            )
            .expect("allowed for tests");
            assert!(allowed[0].allow_insecure_http);
        }
        for loopback in [
            "http://127.0.0.1:9",
            "http://127.1.2.3",
            "http://[::1]:8080",
            "http://localhost:9",
            "http://LOCALHOST",
        ] {
            let text = provider(&format!("issuer = \"{loopback}\""), "");
            let providers = parse(&tables(&text), &no_env).expect(loopback);
            assert!(!providers[0].allow_insecure_http);
        }
        let pages = provider(
            "issuer = \"https://idp.example\"",
            "logo_url = \"http://cdn.example/logo.svg\"\nredirect_url = \"http://auth.example/cb\"",
        );
        assert!(parse(&tables(&pages), &no_env).is_ok());
    }

    /// Discovered endpoints obey the same rule as configured ones.
    #[test]
    fn plain_http_discovered_endpoints_are_refused() {
        let insecure = Url::parse("http://idp.example/token").expect("url");
        assert!(!plain_http_allowed(&insecure, false));
        assert!(plain_http_allowed(&insecure, true));
        let loopback = Url::parse("http://127.0.0.1:9/token").expect("url");
        assert!(plain_http_allowed(&loopback, false));
    }

    /// The secret comes from the environment (which wins), a file, or the
    /// table; a public client needs none.
    #[test]
    fn secret_sources() {
        let text = "[[providers]]\nname = \"my-idp\"\nissuer = \"https://x\"\nclient_id = \"c\"\nclient_secret = \"from-file\"\n";
        let env = |name: &str| {
            (name == "CONNECT_PROVIDER_MY_IDP_CLIENT_SECRET").then(|| "from-env".to_owned())
        };
        let providers = parse(&tables(text), &env).expect("valid");
        assert_eq!(providers[0].client_secret.as_str(), "from-env");
        let dir = tempfile_dir();
        let path = dir.join("secret");
        std::fs::write(&path, "from-a-file\n").expect("write");
        let text = format!(
            "[[providers]]\nname = \"p\"\nissuer = \"https://x\"\nclient_id = \"c\"\nclient_secret_file = {:?}\n",
            path.display().to_string()
        );
        let providers = parse(&tables(&text), &no_env).expect("valid");
        assert_eq!(providers[0].client_secret.as_str(), "from-a-file");
        let public = "[[providers]]\nname = \"p\"\nissuer = \"https://x\"\nclient_id = \"c\"\ntoken_endpoint_auth_method = \"none\"\n";
        assert!(parse(&tables(public), &no_env).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "authority-providers-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
