//! The account page's section for providers of a credentials kind
//! ([`token_broker::credentials`]): per provider, whether something is
//! stored and when, a form to store (or replace) a username and password
//! or a key, and Remove. The form is never filled in from what is stored:
//! the secret never reaches the page. Its actions post to `/account` with
//! the CSRF token like every form there.

use std::fmt::Write as _;

use token_broker::credentials::{
    CredentialKind, MAX_API_KEY_LEN, MAX_PASSWORD_LEN, MAX_USERNAME_LEN, Secret,
};
use token_broker::{ConnectError, CredentialView};
use token_repository::Timestamp;

use super::when::when;
use super::{BrowserSession, button_form, escape, hidden, query_encode};
use crate::form::Form;
use crate::problem::Problem;
use crate::state::AppState;

/// The section's HTML (empty without such providers).
pub(super) async fn section(
    state: &AppState,
    subject: &str,
    csrf: &str,
) -> Result<String, Problem> {
    let connect = state.connect();
    if connect.registry().credentials().next().is_none() {
        return Ok(String::new());
    }
    let views: Vec<CredentialView> = connect.credential_views(subject).await?;
    let mut body = String::from(
        "<section aria-labelledby=\"credentials\"><h2 id=\"credentials\">Stored credentials</h2><ul class=\"plain\">",
    );
    for provider in connect.registry().credentials() {
        let view = views.iter().find(|view| view.provider == provider.name);
        let status = view.map_or("not_stored", |view| view.status);
        let label = match (status, view.and_then(|view| view.stored_at)) {
            ("stored", Some(at)) => format!(
                "Stored {}",
                when(Timestamp::from_unix_millis(at.saturating_mul(1000)))
            ),
            ("unreadable", _) => "Stored, but no longer readable: store it again".to_owned(),
            _ => "Nothing stored".to_owned(),
        };
        let name = escape(&provider.name);
        let fields = match provider.kind {
            CredentialKind::Password => format!(
                "<label for=\"cred-user-{name}\">Username</label>\
                 <input type=\"text\" id=\"cred-user-{name}\" name=\"username\" autocomplete=\"off\" maxlength=\"{MAX_USERNAME_LEN}\" required>\
                 <label for=\"cred-pass-{name}\">Password</label>\
                 <input type=\"password\" id=\"cred-pass-{name}\" name=\"password\" autocomplete=\"new-password\" maxlength=\"{MAX_PASSWORD_LEN}\" required>"
            ),
            CredentialKind::ApiKey => format!(
                "<label for=\"cred-key-{name}\">Key</label>\
                 <input type=\"password\" id=\"cred-key-{name}\" name=\"api_key\" autocomplete=\"off\" maxlength=\"{MAX_API_KEY_LEN}\" required>"
            ),
        };
        let form = if provider.enabled {
            format!(
                "<form method=\"post\" action=\"/account\">{csrf_field}{action}{provider_field}{fields}\
                 <button type=\"submit\">{verb}</button></form>",
                csrf_field = hidden("csrf", csrf),
                action = hidden("action", "store_credentials"),
                provider_field = hidden("provider", &provider.name),
                verb = if status == "not_stored" {
                    "Store"
                } else {
                    "Replace"
                },
            )
        } else {
            String::new()
        };
        let remove = if status == "not_stored" {
            String::new()
        } else {
            button_form(
                "/account",
                csrf,
                &[
                    ("action", "remove_credentials"),
                    ("provider", &provider.name),
                ],
                "Remove",
                "danger",
            )
        };
        let _ = write!(
            body,
            "<li class=\"card\" data-credentials=\"{name}\" data-status=\"{status}\"><span><strong>{display}</strong><br><span class=\"muted\">{label}</span></span>{form}{remove}</li>",
            display = escape(&provider.display_name),
        );
    }
    body.push_str("</ul></section>");
    Ok(body)
}

/// `action=store_credentials`: stores the form's secret; refused secrets
/// (kind, size, characters) come back as a notice, storing nothing.
pub(super) async fn store(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
) -> Result<String, Problem> {
    let provider = form
        .get("provider")
        .ok_or_else(|| Problem::invalid_request("no provider named"))?;
    let secret = match (
        form.get("username"),
        form.get("password"),
        form.get("api_key"),
    ) {
        (Some(username), Some(password), None) => Secret::Password {
            username: username.to_owned(),
            password: password.to_owned(),
        },
        (None, None, Some(api_key)) => Secret::ApiKey {
            api_key: api_key.to_owned(),
        },
        _ => return Ok(failed(provider)),
    };
    let holder = &session.record.holder;
    match state
        .connect()
        .store_credentials(&holder.subject, &holder.username, provider, secret)
        .await
    {
        Ok(_) => Ok(format!(
            "/account?done=credentials_stored&provider={}",
            query_encode(provider)
        )),
        Err(ConnectError::Credential(_)) => Ok(failed(provider)),
        Err(error) => Err(Problem::from(error)),
    }
}

fn failed(provider: &str) -> String {
    format!(
        "/account?failed=credentials&provider={}",
        query_encode(provider)
    )
}

/// `action=remove_credentials`.
pub(super) async fn remove(
    state: &AppState,
    session: &BrowserSession,
    form: &Form,
) -> Result<String, Problem> {
    let provider = form
        .get("provider")
        .ok_or_else(|| Problem::invalid_request("no provider named"))?;
    match state
        .connect()
        .remove_credentials(&session.record.holder.subject, provider)
        .await
    {
        Ok(()) | Err(ConnectError::NotConnected) => Ok(format!(
            "/account?done=credentials_removed&provider={}",
            query_encode(provider)
        )),
        Err(error) => Err(Problem::from(error)),
    }
}
