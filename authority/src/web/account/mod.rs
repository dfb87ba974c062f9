//! `/account`: the signed-in user's page, and `POST /account`, its forms.
//!
//! The page shows the name and e-mail (editable), a password change
//! (current password required; every other session ends) or, for an
//! account without a password (federated sign-in), the provider it signs
//! in with, the live
//! sessions and devices with "sign out" each and "sign out everywhere", the
//! applications the user allowed (consents, revocable), and the connected
//! services with their status and Connect / Disconnect buttons, and the
//! stored credentials of providers of a credentials kind
//! ([`super::credentials`]). Every form
//! posts to `/account` with the session's CSRF token and an `action`.
//!
//! This module renders the page; `actions` carries out its forms.

use std::fmt::Write as _;

use http::{HeaderMap, StatusCode};
use token_repository::{ResourceTag, Timestamp, TokenKind, TokenRecord, TokenWriter as _};
use uuid::Uuid;
use warp::reply::Response;

use super::when::when;
use super::{
    BROWSER_CLIENT, BrowserSession, button_form, escape, hidden, html, page, problem_page,
    query_encode, see_other,
};
use crate::form::Form;
use crate::oauth::consent;
use crate::problem::Problem;
use crate::state::AppState;

mod actions;

pub use self::actions::submit;

fn to_signin() -> Response {
    see_other(&format!("/signin?return_to={}", query_encode("/account")))
}

/// A fixed message for a `?done=` / `?failed=` code (never reflected text).
fn notice(query: &str) -> String {
    let form = Form::parse(query.as_bytes()).unwrap_or_default();
    let provider = form
        .get("provider")
        .filter(|name| token_broker::providers::valid_name(name))
        .map(escape)
        .unwrap_or_default();
    let ok = |text: String| format!("<p class=\"notice\" role=\"status\">{text}</p>");
    let bad = |text: String| format!("<p class=\"error\" role=\"alert\">{text}</p>");
    match (form.get("done"), form.get("failed")) {
        (Some("profile"), _) => ok("Your profile was saved.".into()),
        (Some("password"), _) => ok("Your password was changed. Every other session was signed out.".into()),
        (Some("signed_out"), _) => ok("The session was signed out.".into()),
        (Some("consent_revoked"), _) => ok("The application's access was withdrawn.".into()),
        (Some("connected"), _) => ok(format!("{provider} is connected.")),
        (Some("disconnected"), _) => ok(format!("{provider} is disconnected.")),
        (Some("credentials_stored"), _) => ok(format!("Your credentials for {provider} were stored.")),
        (Some("credentials_removed"), _) => ok(format!("Your credentials for {provider} were removed.")),
        (_, Some("credentials")) => bad(format!(
            "The credentials for {provider} were refused and nothing was stored: fill in every field, \
             without line breaks, within the length limits."
        )),
        (_, Some("password")) => bad("The current password is wrong, or the new passwords do not match or are too short (at least 8 characters).".into()),
        (_, Some("no_password")) => bad("This account has no password to change: it signs in with an identity provider.".into()),
        (_, Some("throttled")) => bad("Too many failed attempts. Please wait a while.".into()),
        (_, Some("profile")) => bad("The name or e-mail is too long or contains control characters.".into()),
        (_, Some("account_mismatch")) => bad(format!(
            "You signed in at {provider} with a different account than the one connected. \
             The existing connection was kept; disconnect it first to connect another account."
        )),
        (_, Some("access_denied")) => bad(format!("You did not allow the connection to {provider}.")),
        (_, Some("busy")) => bad(format!("{provider} is being refreshed right now; try again.")),
        (_, Some("unavailable")) => bad(format!("{provider} cannot be reached right now; try again later.")),
        (_, Some(reason)) if reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && reason.len() <= 32 => {
            bad(format!("Connecting {provider} failed ({}).", escape(reason)))
        }
        _ => String::new(),
    }
}

/// One session (token family) on the page.
struct SessionRow {
    family: Uuid,
    browser: bool,
    client: Option<String>,
    issued_at: Timestamp,
    expires_at: Timestamp,
    scope: String,
}

fn sessions(records: &[TokenRecord]) -> Vec<SessionRow> {
    let mut rows: Vec<SessionRow> = Vec::new();
    for record in records {
        let browser = record.holder.client_id.as_deref() == Some(BROWSER_CLIENT);
        if browser && record.kind != TokenKind::Refresh {
            continue;
        }
        let client = record.holder.client_id.clone().filter(|_| !browser);
        match rows.iter_mut().find(|row| row.family == record.family) {
            Some(row) => {
                row.browser |= browser;
                if row.client.is_none() {
                    row.client = client;
                }
                row.issued_at = row.issued_at.min(record.issued_at);
                row.expires_at = row.expires_at.max(record.expires_at);
                if row.scope.is_empty() {
                    row.scope = record.holder.scopes.to_string();
                }
            }
            None => rows.push(SessionRow {
                family: record.family,
                browser,
                client,
                issued_at: record.issued_at,
                expires_at: record.expires_at,
                scope: record.holder.scopes.to_string(),
            }),
        }
    }
    rows
}

/// ` · for <uri>, <uri>`: the resources a consent approved, escaped; a
/// removed resource shows as its tag.
async fn resource_names(state: &AppState, tags: &[ResourceTag]) -> Result<String, Problem> {
    if tags.is_empty() {
        return Ok(String::new());
    }
    let found = state.resources().get_many(tags).await?;
    let names: Vec<String> = found
        .iter()
        .zip(tags)
        .map(|(resource, tag)| match resource {
            Some(resource) => format!("<code>{}</code>", escape(resource.uri.as_str())),
            None => format!("<code>{tag}</code> (removed)"),
        })
        .collect();
    Ok(format!(" · for {}", names.join(", ")))
}

/// The display name of the provider a federated account signs in with
/// (its configured name when the provider is no longer configured).
fn signs_in_with(state: &AppState, user: &crate::accounts::User) -> String {
    let Some(identity) = &user.identity else {
        return "an external identity provider".to_owned();
    };
    state
        .connect()
        .registry()
        .get(&identity.provider)
        .map_or_else(
            || identity.provider.clone(),
            |provider| provider.config.display_name.clone(),
        )
}

/// `GET /account`
pub async fn show(state: AppState, headers: HeaderMap, query: String) -> Response {
    let session = match super::session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_signin(),
        Err(problem) => return problem_page(&problem),
    };
    match render(&state, &session, &notice(&query)).await {
        Ok(response) => response,
        Err(problem) => problem_page(&problem),
    }
}

async fn render(
    state: &AppState,
    session: &BrowserSession,
    notice: &str,
) -> Result<Response, Problem> {
    let subject = &session.record.holder.subject;
    let user = state
        .accounts()
        .user(&session.record.holder.username)
        .await?
        .filter(|user| &user.subject == subject)
        .ok_or_else(|| Problem::invalid_request("the account no longer exists"))?;
    let records = state.store().list(subject).await?;
    let consents = consent::consents(state, subject).await?;
    let csrf = session.csrf_token();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header class=\"bar\"><h1>Your account</h1>{}</header>{notice}",
        button_form("/logout", &csrf, &[], "Sign out", "secondary")
    );

    // Profile.
    let _ = write!(
        body,
        "<form class=\"card\" method=\"post\" action=\"/account\" aria-labelledby=\"profile\">\
         <h2 id=\"profile\">Profile</h2>{csrf_field}{action}\
         <p class=\"muted\">Username: <strong>{username}</strong></p>\
         <label for=\"name\">Name</label>\
         <input type=\"text\" id=\"name\" name=\"name\" value=\"{name}\" autocomplete=\"name\" maxlength=\"256\">\
         <label for=\"email\">E-mail</label>\
         <input type=\"email\" id=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"email\" maxlength=\"256\">\
         <button type=\"submit\">Save</button></form>",
        csrf_field = hidden("csrf", &csrf),
        action = hidden("action", "profile"),
        username = escape(&user.username),
        name = escape(user.name.as_deref().unwrap_or_default()),
        email = escape(user.email.as_deref().unwrap_or_default()),
    );

    // Password: none for an account that signs in with a provider.
    if user.has_password() {
        let _ = write!(
            body,
            "<form class=\"card\" method=\"post\" action=\"/account\" aria-labelledby=\"password\">\
             <h2 id=\"password\">Password</h2>{csrf_field}{action}\
             <label for=\"current_password\">Current password</label>\
             <input type=\"password\" id=\"current_password\" name=\"current_password\" autocomplete=\"current-password\" required>\
             <label for=\"new_password\">New password</label>\
             <input type=\"password\" id=\"new_password\" name=\"new_password\" autocomplete=\"new-password\" minlength=\"8\" required>\
             <label for=\"confirm_password\">New password again</label>\
             <input type=\"password\" id=\"confirm_password\" name=\"confirm_password\" autocomplete=\"new-password\" minlength=\"8\" required>\
             <p class=\"muted\">Changing it signs out every other session and device.</p>\
             <button type=\"submit\">Change password</button></form>",
            csrf_field = hidden("csrf", &csrf),
            action = hidden("action", "password"),
        );
    } else {
        let _ = write!(
            body,
            "<section class=\"card\" aria-labelledby=\"password\" data-signs-in-with=\"{name}\">\
             <h2 id=\"password\">Sign-in</h2>\
             <p>This account has no password: it signs in with <strong>{display}</strong>.</p></section>",
            name = escape(
                user.identity
                    .as_ref()
                    .map_or("", |identity| identity.provider.as_str())
            ),
            display = escape(&signs_in_with(state, &user)),
        );
    }

    // Sessions.
    body.push_str("<section aria-labelledby=\"sessions\"><h2 id=\"sessions\">Sessions and devices</h2><ul class=\"plain\">");
    for row in sessions(&records) {
        let current = row.family == session.record.family;
        let what = match (&row.client, row.browser) {
            (Some(client), true) => format!(
                "Browser sign-in, and the application <strong>{}</strong>",
                escape(client)
            ),
            (Some(client), false) => format!("Application <strong>{}</strong>", escape(client)),
            (None, true) => "Browser sign-in".to_owned(),
            (None, false) => "Password sign-in (API)".to_owned(),
        };
        let this = if current {
            " <strong>(this browser)</strong>"
        } else {
            ""
        };
        let scope = if row.scope.is_empty() {
            String::new()
        } else {
            format!(" · scope <code>{}</code>", escape(&row.scope))
        };
        let family = row.family.to_string();
        let _ = write!(
            body,
            "<li class=\"row\" data-session=\"{family}\"><span>{what}{this}<br><span class=\"muted\">since {since} · until {until}{scope}</span></span>{button}</li>",
            since = when(row.issued_at),
            until = when(row.expires_at),
            button = button_form(
                "/account",
                &csrf,
                &[("action", "sign_out"), ("session", &family)],
                "Sign out",
                "danger"
            ),
        );
    }
    let _ = write!(
        body,
        "</ul>{}</section>",
        button_form(
            "/account",
            &csrf,
            &[("action", "sign_out_everywhere")],
            "Sign out everywhere",
            "danger"
        )
    );

    // Applications.
    if !consents.is_empty() {
        body.push_str("<section aria-labelledby=\"apps\"><h2 id=\"apps\">Applications you allowed</h2><ul class=\"plain\">");
        for (client_id, consent) in &consents {
            let scope = consent.scopes.to_string();
            let resources = resource_names(state, &consent.resources).await?;
            let _ = write!(
                body,
                "<li class=\"row\"><span><strong>{}</strong><br><span class=\"muted\">scope <code>{}</code>{}</span></span>{}</li>",
                escape(client_id),
                escape(if scope.is_empty() { "-" } else { &scope }),
                resources,
                button_form(
                    "/account",
                    &csrf,
                    &[("action", "revoke_consent"), ("client_id", client_id)],
                    "Withdraw",
                    "danger"
                ),
            );
        }
        body.push_str("</ul></section>");
    }

    // Connected services.
    let connect = state.connect();
    if !connect.registry().is_empty() {
        let views = connect.connections(subject).await?;
        body.push_str("<section aria-labelledby=\"services\"><h2 id=\"services\">Connected services</h2><ul class=\"plain\">");
        for provider in connect.registry().all() {
            let config = &provider.config;
            let view = views.iter().find(|view| view.provider == config.name);
            let (status, label) = match view.map(|view| view.status) {
                Some("connected") => ("connected", "Connected"),
                Some("needs_reconnect") => ("needs_reconnect", "Needs reconnecting"),
                _ => ("not_connected", "Not connected"),
            };
            let account = view
                .and_then(|view| view.account.as_deref())
                .map(|account| format!(" as <code>{}</code>", escape(account)))
                .unwrap_or_default();
            let mut buttons = String::new();
            if config.enabled && status != "connected" {
                buttons.push_str(&button_form(
                    "/account",
                    &csrf,
                    &[("action", "connect"), ("provider", &config.name)],
                    if status == "needs_reconnect" {
                        "Reconnect"
                    } else {
                        "Connect"
                    },
                    "",
                ));
            }
            if status != "not_connected" {
                buttons.push_str(&button_form(
                    "/account",
                    &csrf,
                    &[("action", "disconnect"), ("provider", &config.name)],
                    "Disconnect",
                    "danger",
                ));
            }
            let _ = write!(
                body,
                "<li class=\"row\" data-provider=\"{name}\" data-status=\"{status}\"><span><strong>{display}</strong><br><span class=\"muted\">{label}{account}</span></span><span>{buttons}</span></li>",
                name = escape(&config.name),
                display = escape(&config.display_name),
            );
        }
        body.push_str("</ul></section>");
    }
    body.push_str(&super::credentials::section(state, subject, &csrf).await?);
    Ok(html(StatusCode::OK, page("Your account", &body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notices are fixed texts; unknown or odd codes show nothing raw.
    #[test]
    fn notices() {
        assert!(notice("done=connected&provider=orcid").contains("orcid is connected"));
        assert!(!notice("failed=%3Cscript%3E").contains("<script"));
        assert!(notice("provider=%3Cb%3E&done=connected").contains(" is connected"));
        assert_eq!(notice(""), "");
    }
}
