//! A connected-services setup for a test: a harness Redis, the local
//! OpenID Connect provider, a configuration file naming it, and as many
//! authority processes (replicas) as the test starts.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;
use token_broker::crypto::Keyring;
use token_broker::record::{Connection, Stored};
use token_repository::{KeyPrefix, SubjectTag};
use token_test_harness::RedisServer;

use crate::Authority;
use crate::oidc::{
    Browser, CLIENT_ID, CLIENT_SECRET, OidcProvider, SECOND_CLIENT_ID, SECOND_CLIENT_SECRET,
};

/// The provider's name in the authority's configuration.
pub const PROVIDER: &str = "test-idp";
/// The second provider of [`Setup::start_two`]: another client of the
/// same provider process.
pub const SECOND: &str = "test-idp-b";
/// `CONNECT_STATE_KEY` of the test authorities.
pub const STATE_KEY: &str = "MBgwaAU/a08Qv6bqfhEeHCObD/aTHo+6FUWtKPVbMso=";
/// The first encryption key.
pub const KEY_1: &str = "k1:nkRyspRZdtE/w5aNWCi+xgxKlMlHb991iMZeCTDCE1E=";
/// A second one, for rotation.
pub const KEY_2: &str = "k2:MQzZvRihtR8hUAXoFouUYRsIre65eRV2ko1V+1++IHY=";
/// `CONNECT_SUCCESS_URL`.
pub const SUCCESS_URL: &str = "http://app.test/connected";
/// `CONNECT_FAILURE_URL`.
pub const FAILURE_URL: &str = "http://app.test/failed";
/// Passwords of the authority's test users.
pub use crate::PASSWORD;

/// Redis, the provider and the authority's configuration.
#[derive(Debug)]
pub struct Setup {
    /// The authorities' Redis.
    pub redis: RedisServer,
    /// The external provider.
    pub provider: OidcProvider,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// An authority user with a live access token.
#[derive(Debug, Clone)]
pub struct User {
    /// Username (also the login at the provider).
    pub username: String,
    /// The user's subject at the authority.
    pub subject: String,
    /// An access token (`tsa_…`).
    pub bearer: String,
}

impl Setup {
    /// Starts Redis and the provider (`provider_env`: `OIDC_*` settings)
    /// and writes a configuration file whose `[[providers]]` table for
    /// [`PROVIDER`] ends with `provider_toml` (extra fields).
    ///
    /// # Panics
    ///
    /// When something does not start.
    #[must_use]
    pub fn start(provider_env: &[(&str, &str)], provider_toml: &str) -> Self {
        let redis = RedisServer::start();
        let provider = OidcProvider::start(provider_env);
        let dir = tempfile::tempdir().expect("temporary directory");
        let setup = Self {
            redis,
            provider,
            dir,
            env: [
                ("CONNECT_STATE_KEY", STATE_KEY),
                ("CONNECT_KEYS", KEY_1),
                ("CONNECT_SUCCESS_URL", SUCCESS_URL),
                ("CONNECT_FAILURE_URL", FAILURE_URL),
                ("CONNECT_PROVIDER_TIMEOUT_MS", "5000"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        };
        setup.write_config(provider_toml);
        setup
    }

    /// Like [`Self::start`], with a second provider, [`SECOND`] (another
    /// client of the same provider process), whose table ends with
    /// `second_toml`.
    ///
    /// # Panics
    ///
    /// When something does not start.
    #[must_use]
    pub fn start_two(
        provider_env: &[(&str, &str)],
        provider_toml: &str,
        second_toml: &str,
    ) -> Self {
        let setup = Self::start(provider_env, provider_toml);
        setup.write_config_two(provider_toml, second_toml);
        setup
    }

    /// (Re)writes the configuration file with both [`PROVIDER`] and
    /// [`SECOND`].
    ///
    /// # Panics
    ///
    /// When it cannot be written.
    pub fn write_config_two(&self, provider_toml: &str, second_toml: &str) {
        self.write_config(provider_toml);
        let second = format!(
            "[[providers]]\n\
             name = \"{SECOND}\"\n\
             display_name = \"Test IdP (second client)\"\n\
             issuer = \"{issuer}\"\n\
             client_id = \"{SECOND_CLIENT_ID}\"\n\
             client_secret = \"{SECOND_CLIENT_SECRET}\"\n\
             scopes = [\"openid\", \"offline_access\"]\n\
             {second_toml}\n",
            issuer = self.provider.issuer(),
        );
        let mut text = std::fs::read_to_string(self.config_path()).expect("configuration");
        text.push_str(&second);
        std::fs::write(self.config_path(), text).expect("write the configuration");
    }

    /// Appends `toml` (more `[[providers]]` tables, say) to the
    /// configuration file; later authorities read it.
    ///
    /// # Panics
    ///
    /// When it cannot be written.
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(self.config_path()).expect("configuration");
        text.push('\n');
        text.push_str(toml);
        std::fs::write(self.config_path(), text).expect("write the configuration");
    }

    /// The raw stored value of `subject`'s credentials for `provider` (a
    /// provider of a credentials kind).
    pub async fn stored_credentials(&self, subject: &str, provider: &str) -> Option<String> {
        let key = KeyPrefix::default().credential(&SubjectTag::of(subject), provider);
        let client = redis::Client::open(self.redis.url()).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("GET")
    }

    /// The configuration file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("authority.toml")
    }

    /// (Re)writes the configuration file; later authorities read it.
    ///
    /// # Panics
    ///
    /// When it cannot be written.
    pub fn write_config(&self, provider_toml: &str) {
        let text = format!(
            "[[providers]]\n\
             name = \"{PROVIDER}\"\n\
             display_name = \"Test IdP\"\n\
             logo_url = \"https://idp.test/logo.svg\"\n\
             issuer = \"{issuer}\"\n\
             client_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\n\
             scopes = [\"openid\", \"offline_access\"]\n\
             {provider_toml}\n",
            issuer = self.provider.issuer(),
        );
        std::fs::write(self.config_path(), text).expect("write the configuration");
    }

    /// Starts one authority (a replica) with the test keys, then `extra`.
    #[must_use]
    pub fn authority(&self, binary: &str, extra: &[(&str, &str)]) -> Authority {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        Authority::start_with_config(binary, &self.redis.url(), &env, Some(&self.config_path()))
    }

    /// Starts an authority like [`Self::authority`] on another Redis
    /// (`redis_url`), with the same keys and providers.
    #[must_use]
    pub fn authority_on(&self, binary: &str, redis_url: &str, extra: &[(&str, &str)]) -> Authority {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        Authority::start_with_config(binary, redis_url, &env, Some(&self.config_path()))
    }

    /// The raw stored value of `subject`'s connection to [`PROVIDER`].
    pub async fn stored(&self, subject: &str) -> Option<String> {
        self.stored_at(subject, PROVIDER).await
    }

    /// The raw stored value of `subject`'s connection to `provider`.
    pub async fn stored_at(&self, subject: &str, provider: &str) -> Option<String> {
        let key = KeyPrefix::default().connection(&SubjectTag::of(subject), provider);
        let client = redis::Client::open(self.redis.url()).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("GET")
    }

    /// Decrypts `subject`'s stored connection with `keys` (what only the
    /// authority can do).
    ///
    /// # Panics
    ///
    /// When there is none or it does not decrypt.
    pub async fn decrypt(&self, subject: &str, keys: &str) -> Connection {
        self.decrypt_at(subject, PROVIDER, keys).await
    }

    /// Decrypts `subject`'s stored connection to `provider` with `keys`.
    ///
    /// # Panics
    ///
    /// When there is none or it does not decrypt.
    pub async fn decrypt_at(&self, subject: &str, provider: &str, keys: &str) -> Connection {
        let raw = self
            .stored_at(subject, provider)
            .await
            .expect("a stored connection");
        let keys = Keyring::parse(keys, "keys").expect("keys");
        Stored::parse(&raw)
            .expect("stored value")
            .open(&keys, subject, provider)
            .expect("decrypts")
    }
}

/// Creates `username` at the authority and logs in.
pub async fn user(authority: &Authority, username: &str) -> User {
    authority.add_user(username, PASSWORD, &[]);
    let bearer = authority.login(username, PASSWORD).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let me: Value = authority
        .get_with("/v1/me", &bearer)
        .await
        .json()
        .await
        .expect("me");
    User {
        username: username.to_owned(),
        subject: me["sub"].as_str().expect("sub").to_owned(),
        bearer,
    }
}

/// `GET /v1/connect` for `user`: the test provider's authorize URL.
///
/// # Panics
///
/// Unless the authority offers the provider with a URL.
pub async fn authorize_url(authority: &Authority, user: &User) -> String {
    authorize_url_for(authority, user, PROVIDER).await
}

/// `GET /v1/connect` for `user`: `provider`'s authorize URL.
///
/// # Panics
///
/// Unless the authority offers the provider with a URL.
pub async fn authorize_url_for(authority: &Authority, user: &User, provider: &str) -> String {
    let response = authority.get_with("/v1/connect", &user.bearer).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|offer| offer["name"] == provider)
        .and_then(|offer| offer["authorize_url"].as_str())
        .expect("an authorize URL")
        .to_owned()
}

/// The whole browser flow for `user` (logging in at the provider as the
/// same name): answers the callback URL the provider redirected to, and
/// where the authority's callback then sent the browser.
pub async fn connect(authority: &Authority, user: &User) -> (String, String) {
    connect_to(authority, user, PROVIDER).await
}

/// [`connect`] to `provider`.
pub async fn connect_to(authority: &Authority, user: &User, provider: &str) -> (String, String) {
    let url = authorize_url_for(authority, user, provider).await;
    finish(&url, user).await
}

/// The browser flow from a `/connect/start` link (or a provider URL) for
/// `user`: the callback URL and where the authority then sent the
/// browser.
pub async fn finish(url: &str, user: &User) -> (String, String) {
    let browser = Browser::new();
    let callback = browser.authorize(url, &user.username).await;
    let (status, page) = browser.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the callback redirects");
    (callback.to_string(), page.expect("Location"))
}

/// `GET /v1/connect/{PROVIDER}/token?expires=N` for `user`.
pub async fn provider_token(authority: &Authority, user: &User, expires: u64) -> reqwest::Response {
    authority
        .get_with(
            &format!("/v1/connect/{PROVIDER}/token?expires={expires}"),
            &user.bearer,
        )
        .await
}
