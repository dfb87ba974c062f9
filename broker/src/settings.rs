//! The broker's settings, `CONNECT_*`: each declared once (name, default,
//! bounds, help). [`crate::ConnectConfig::load`] parses them from here, and
//! the authority embeds [`SETTINGS`] in its own table (its `--help`, its
//! configuration file's keys, the README table its test compares).
//!
//! A provider's client secret may also come from
//! `CONNECT_PROVIDER_<NAME>_CLIENT_SECRET` ([`crate::providers::secret_variable`]),
//! one variable per configured provider, so not a setting of this table.

use token_settings::Setting;

/// `CONNECT_STATE_KEY`: signs states, derives PKCE verifiers.
pub const STATE_KEY: Setting = Setting::optional(
    "CONNECT_STATE_KEY",
    "connected services: base64, >= 32 bytes, signs states (required with providers)",
);
/// `CONNECT_STATE_KEY_FILE`: a file holding [`STATE_KEY`].
pub const STATE_KEY_FILE: Setting =
    Setting::optional("CONNECT_STATE_KEY_FILE", "a file holding CONNECT_STATE_KEY");
/// `CONNECT_KEYS`: the keys encrypting provider tokens, first = current.
pub const KEYS: Setting = Setting::optional(
    "CONNECT_KEYS",
    "id:base64key,... 32-byte keys encrypting provider tokens, first = current (required with providers)",
);
/// `CONNECT_KEYS_FILE`: a file holding [`KEYS`].
pub const KEYS_FILE: Setting =
    Setting::optional("CONNECT_KEYS_FILE", "a file holding CONNECT_KEYS");
/// `CONNECT_SUCCESS_URL`: where the callback sends the browser after
/// connecting.
pub const SUCCESS_URL: Setting = Setting::optional(
    "CONNECT_SUCCESS_URL",
    "where the callback sends the browser after connecting (?provider=)",
);
/// `CONNECT_FAILURE_URL`: where the callback sends the browser otherwise.
pub const FAILURE_URL: Setting = Setting::optional(
    "CONNECT_FAILURE_URL",
    "where it sends the browser otherwise (?reason=&provider=)",
);
/// `CONNECT_STATE_TTL`: seconds a user may take at the provider.
pub const STATE_TTL: Setting = Setting::number(
    "CONNECT_STATE_TTL",
    600,
    1..=86_400,
    "seconds a user may take at the provider",
);
/// `CONNECT_PROVIDER_TIMEOUT_MS`: bound on every call to a provider.
pub const PROVIDER_TIMEOUT_MS: Setting = Setting::number(
    "CONNECT_PROVIDER_TIMEOUT_MS",
    10_000,
    100..=120_000,
    "bound on every call to a provider, in milliseconds",
);
/// `CONNECT_CA_FILE`: CA certificates trusted for provider calls on top of
/// the webpki roots.
pub const CA_FILE: Setting = Setting::text_computed(
    "CONNECT_CA_FILE",
    "webpki roots",
    "PEM file of CA certificates trusted for provider calls, on top of the webpki roots",
);
/// `CONNECT_KEEPALIVE_INTERVAL`: seconds between keep-alive passes.
pub const KEEPALIVE_INTERVAL: Setting = Setting::number(
    "CONNECT_KEEPALIVE_INTERVAL",
    300,
    1..=86_400,
    "seconds between keep-alive passes",
);

/// `CONNECT_EXPIRING_MARGIN`: a connection whose refresh token has less
/// than this left is reported `expiring`.
pub const EXPIRING_MARGIN: Setting = Setting::number(
    "CONNECT_EXPIRING_MARGIN",
    604_800,
    0..=31_536_000,
    "seconds: a connection with less left than this is reported expiring",
);

/// `CONNECT_RETURN_URLS`: where `return_to` may send the browser after a
/// connection ([`crate::return_url`]).
pub const RETURN_URLS: Setting = Setting::optional(
    "CONNECT_RETURN_URLS",
    "comma-separated origins or origin + path prefixes that return_to may name",
);

/// `CONNECT_PROVIDERS_POLL_MS`: how often a replica looks whether the
/// providers added through the admin API changed ([`crate::catalog`]).
pub const PROVIDERS_POLL_MS: Setting = Setting::number(
    "CONNECT_PROVIDERS_POLL_MS",
    2_000,
    100..=60_000,
    "how often each replica checks for providers changed through the admin API, in milliseconds (one HGET)",
);

/// Every `CONNECT_*` setting.
pub const SETTINGS: &[Setting] = &[
    STATE_KEY,
    STATE_KEY_FILE,
    KEYS,
    KEYS_FILE,
    SUCCESS_URL,
    FAILURE_URL,
    STATE_TTL,
    PROVIDER_TIMEOUT_MS,
    CA_FILE,
    KEEPALIVE_INTERVAL,
    EXPIRING_MARGIN,
    RETURN_URLS,
    PROVIDERS_POLL_MS,
];
