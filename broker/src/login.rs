//! Sign-in with a provider (federated sign-in): the `login*`, `provision`,
//! `default_scopes` and `scope_map` fields of a `[[providers]]` table,
//! validated ([`LoginConfig`]).
//!
//! ```toml
//! [[providers]]
//! name = "egi"
//! issuer = "https://aai.egi.eu/auth/realms/egi"
//! client_id = "…"
//! scopes = ["openid", "email", "profile", "offline_access"]
//! login = true                                   # a "Sign in with …" button on the sign-in page
//! login_options = [                              # or several buttons, differing in authorize parameters
//!   { name = "Google", params = { idp = "google" } },
//!   { name = "ORCID", params = { idp = "orcid" } },
//! ]
//! provision = true                               # create unknown identities' accounts at first sign-in
//! default_scopes = ["read"]                      # scopes of accounts created so
//! scope_map = { claim = "groups", values = { admins = ["admin"], staff = ["read", "write"] } }
//! connect = true                                 # also a connected service (its tokens are kept)
//! ```
//!
//! The authority is the relying party: the ID token of the sign-in is
//! verified ([`crate::id_token`]); accounts are keyed by (issuer, subject),
//! never by e-mail.

use std::collections::BTreeMap;

use serde::Deserialize;
use token_settings::ConfigError;

/// The most sign-in options one provider may have (buttons on the page).
pub const MAX_LOGIN_OPTIONS: usize = 16;

/// The most values a `scope_map` may map.
pub const MAX_SCOPE_MAP_VALUES: usize = 256;

/// One "Sign in with …" button of a provider: a name and the authorize
/// parameters that set it apart (an IdP hint such as `idp`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginOption {
    /// Shown on the button ("Sign in with {display name}: {name}").
    pub name: String,
    /// Extra authorize parameters of this option (over the provider's
    /// `authorize_params`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Scopes granted from a claim's values at provisioning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeMap {
    /// The ID token claim (a string or an array of strings), e.g. `groups`.
    pub claim: String,
    /// Claim value → scopes.
    pub values: BTreeMap<String, Vec<String>>,
}

impl ScopeMap {
    /// The scopes `claims` map to (in the order of the map's values).
    #[must_use]
    pub fn scopes(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
        let values: Vec<&str> = match claims.get(&self.claim) {
            Some(serde_json::Value::String(value)) => vec![value.as_str()],
            Some(serde_json::Value::Array(values)) => values
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect(),
            _ => Vec::new(),
        };
        let mut scopes = Vec::new();
        for (value, mapped) in &self.values {
            if values.contains(&value.as_str()) {
                scopes.extend(mapped.iter().cloned());
            }
        }
        scopes
    }
}

/// How a provider signs users in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// The buttons; none configured: one button without extra parameters.
    pub options: Vec<LoginOption>,
    /// Unknown identities get an account at their first sign-in.
    pub provision: bool,
    /// Scopes of accounts created at sign-in.
    pub default_scopes: Vec<String>,
    /// More scopes from a claim, at provisioning.
    pub scope_map: Option<ScopeMap>,
}

impl LoginConfig {
    /// The option named `name` (`None`: the provider's plain button, only
    /// when it has no options).
    #[must_use]
    pub fn option(&self, name: Option<&str>) -> Option<Option<&LoginOption>> {
        match name {
            None if self.options.is_empty() => Some(None),
            None => None,
            Some(name) => self
                .options
                .iter()
                .find(|option| option.name == name)
                .map(Some),
        }
    }

    /// The scopes of an account created at sign-in with `claims`:
    /// `default_scopes` then the mapped ones, without repeats.
    #[must_use]
    pub fn provisioned_scopes(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        let mut scopes = self.default_scopes.clone();
        if let Some(map) = &self.scope_map {
            for scope in map.scopes(claims) {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
        scopes
    }
}

/// The raw sign-in fields of a `[[providers]]` table.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLogin {
    pub(crate) login: Option<bool>,
    #[serde(default)]
    pub(crate) login_options: Vec<LoginOption>,
    pub(crate) provision: Option<bool>,
    #[serde(default)]
    pub(crate) default_scopes: Vec<String>,
    pub(crate) scope_map: Option<ScopeMap>,
}

fn scope_word(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 128
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Validates the sign-in fields of `providers[index]`; `issuer` is the
/// provider's (sign-in needs OpenID Connect discovery), `reserved` the
/// authorize parameters the authority sets itself.
///
/// # Errors
///
/// [`ConfigError`] naming the field.
pub(crate) fn parse(
    raw: RawLogin,
    index: usize,
    issuer: Option<&str>,
    reserved: &[&str],
) -> Result<Option<LoginConfig>, ConfigError> {
    let at = |field: &str| format!("providers[{index}].{field}");
    let login = raw.login.unwrap_or(false);
    if !login {
        let set = !raw.login_options.is_empty()
            || raw.provision.is_some()
            || !raw.default_scopes.is_empty()
            || raw.scope_map.is_some();
        if set {
            return Err(ConfigError::new(
                &at("login"),
                "login_options, provision, default_scopes and scope_map need login = true",
            ));
        }
        return Ok(None);
    }
    if issuer.is_none() {
        return Err(ConfigError::new(
            &at("login"),
            "sign-in needs `issuer` (OpenID Connect discovery: the ID token's keys)",
        ));
    }
    if raw.login_options.len() > MAX_LOGIN_OPTIONS {
        return Err(ConfigError::new(
            &at("login_options"),
            format!("at most {MAX_LOGIN_OPTIONS} options"),
        ));
    }
    for (number, option) in raw.login_options.iter().enumerate() {
        if option.name.trim().is_empty() || option.name.len() > 64 {
            return Err(ConfigError::new(
                &at(&format!("login_options[{number}].name")),
                "expected 1 to 64 characters",
            ));
        }
        if raw.login_options[..number]
            .iter()
            .any(|other| other.name == option.name)
        {
            return Err(ConfigError::new(
                &at(&format!("login_options[{number}].name")),
                format!("{:?} is already an option's name", option.name),
            ));
        }
        if let Some(key) = option
            .params
            .keys()
            .find(|key| reserved.contains(&key.as_str()))
        {
            return Err(ConfigError::new(
                &at(&format!("login_options[{number}].params")),
                format!("{key:?} is set by the authority itself"),
            ));
        }
    }
    if let Some(bad) = raw.default_scopes.iter().find(|scope| !scope_word(scope)) {
        return Err(ConfigError::new(
            &at("default_scopes"),
            format!("{bad:?} is not a scope"),
        ));
    }
    if let Some(map) = &raw.scope_map {
        if map.claim.is_empty() {
            return Err(ConfigError::new(
                &at("scope_map.claim"),
                "must not be empty",
            ));
        }
        if map.values.len() > MAX_SCOPE_MAP_VALUES {
            return Err(ConfigError::new(
                &at("scope_map.values"),
                format!("at most {MAX_SCOPE_MAP_VALUES} values"),
            ));
        }
        if let Some(bad) = map.values.values().flatten().find(|s| !scope_word(s)) {
            return Err(ConfigError::new(
                &at("scope_map.values"),
                format!("{bad:?} is not a scope"),
            ));
        }
    }
    Ok(Some(LoginConfig {
        options: raw.login_options,
        provision: raw.provision.unwrap_or(false),
        default_scopes: raw.default_scopes,
        scope_map: raw.scope_map,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(json).expect("claims")
    }

    /// Scopes: the defaults, then what the claim's values map to, once
    /// each; a claim of another type maps nothing.
    #[test]
    fn provisioned_scopes() {
        let config = LoginConfig {
            options: Vec::new(),
            provision: true,
            default_scopes: vec!["read".into()],
            scope_map: Some(ScopeMap {
                claim: "groups".into(),
                values: BTreeMap::from([
                    ("admins".into(), vec!["admin".into(), "read".into()]),
                    ("staff".into(), vec!["write".into()]),
                ]),
            }),
        };
        assert_eq!(
            config.provisioned_scopes(&claims(r#"{"groups":["admins","other"]}"#)),
            ["read", "admin"]
        );
        assert_eq!(
            config.provisioned_scopes(&claims(r#"{"groups":"staff"}"#)),
            ["read", "write"]
        );
        assert_eq!(
            config.provisioned_scopes(&claims(r#"{"groups":{"admins":true}}"#)),
            ["read"]
        );
        assert_eq!(config.provisioned_scopes(&claims("{}")), ["read"]);
    }

    /// Options are found by name; without options, only the plain button.
    #[test]
    fn options() {
        let mut config = LoginConfig {
            options: Vec::new(),
            provision: false,
            default_scopes: Vec::new(),
            scope_map: None,
        };
        assert_eq!(config.option(None), Some(None));
        assert_eq!(config.option(Some("x")), None);
        config.options.push(LoginOption {
            name: "Google".into(),
            params: BTreeMap::from([("idp".into(), "google".into())]),
        });
        assert_eq!(config.option(None), None);
        assert_eq!(
            config.option(Some("Google")).flatten().map(|o| &o.name[..]),
            Some("Google")
        );
    }

    /// Sign-in fields without `login = true`, without an issuer, with
    /// reserved or repeated options, or bad scopes are refused by name.
    #[test]
    fn invalid_fields() {
        let raw = |text: &str| -> RawLogin { toml::from_str(text).expect("toml") };
        let reserved = ["state", "nonce"];
        let cases = [
            ("provision = true", Some("x"), "providers[0].login"),
            ("login = true", None, "providers[0].login"),
            (
                "login = true\nlogin_options = [{ name = \"a\", params = { nonce = \"x\" } }]",
                Some("x"),
                "providers[0].login_options[0].params",
            ),
            (
                "login = true\nlogin_options = [{ name = \"a\" }, { name = \"a\" }]",
                Some("x"),
                "providers[0].login_options[1].name",
            ),
            (
                "login = true\ndefault_scopes = [\"a b\"]",
                Some("x"),
                "providers[0].default_scopes",
            ),
            (
                "login = true\nscope_map = { claim = \"groups\", values = { a = [\"\"] } }",
                Some("x"),
                "providers[0].scope_map.values",
            ),
        ];
        for (text, issuer, field) in cases {
            let error = parse(raw(text), 0, issuer, &reserved).unwrap_err();
            assert_eq!(error.variable, field, "{text}");
        }
        assert_eq!(
            parse(raw(""), 0, Some("x"), &reserved).expect("valid"),
            None
        );
        let config = parse(raw("login = true"), 0, Some("x"), &reserved)
            .expect("valid")
            .expect("login");
        assert!(!config.provision, "provisioning is opt-in");
    }
}
