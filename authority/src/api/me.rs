//! The token holder: `GET /v1/me` and its sessions.

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use token_repository::{TokenKind, TokenRecord, TokenWriter as _};
use uuid::Uuid;
use warp::reply::Response;

use crate::authenticate;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// `GET /v1/me`: who the bearer is.
pub async fn me(state: AppState, headers: HeaderMap) -> Response {
    let result = async {
        let record = authenticate::bearer(&state, &headers).await?;
        let aud = crate::oauth::resource::aud_claim(
            crate::oauth::resource::audience_uris(&state, &record.audience).await?,
        );
        Ok::<_, Problem>((record, aud))
    };
    match result.await {
        Ok((record, aud)) => {
            let mut body = serde_json::json!({
                "sub": record.holder.subject,
                "username": record.holder.username,
                "name": record.holder.name,
                "email": record.holder.email,
                "scope": record.holder.scopes.to_string(),
                "client_id": record.holder.client_id,
                "token_id": record.id,
                "iat": record.issued_at.as_unix_secs(),
                "exp": record.expires_at.as_unix_secs(),
            });
            // Absent for tokens issued before audiences existed.
            if let Some(aud) = aud {
                body["aud"] = aud;
            }
            json(StatusCode::OK, &body)
        }
        Err(problem) => problem.into_response(),
    }
}

/// One live token in the session list: never the token itself.
#[derive(Serialize)]
struct SessionToken {
    id: Uuid,
    /// `access`, `refresh`, or `browser` (a browser session at the
    /// authority, [`crate::web`]).
    kind: &'static str,
    session: Uuid,
    client_id: Option<String>,
    scope: String,
    issued_at: u64,
    expires_at: u64,
    current: bool,
}

fn view(record: &TokenRecord, caller: &TokenRecord) -> SessionToken {
    SessionToken {
        id: record.id,
        kind: if is_browser(record) {
            "browser"
        } else {
            record.kind.as_str()
        },
        session: record.family,
        client_id: record.holder.client_id.clone(),
        scope: record.holder.scopes.to_string(),
        issued_at: record.issued_at.as_unix_secs(),
        expires_at: record.expires_at.as_unix_secs(),
        current: record.id == caller.id,
    }
}

/// Whether `record` belongs to a browser session itself.
fn is_browser(record: &TokenRecord) -> bool {
    record.holder.client_id.as_deref() == Some(crate::web::BROWSER_CLIENT)
}

/// `GET /v1/sessions`: the caller's live tokens.
pub async fn sessions(state: AppState, headers: HeaderMap) -> Response {
    let result = async {
        let caller = authenticate::bearer(&state, &headers).await?;
        let records = state.store().list(&caller.holder.subject).await?;
        // A browser session's own access token is never handed out: not
        // listed.
        let tokens: Vec<SessionToken> = records
            .iter()
            .filter(|record| !is_browser(record) || record.kind == TokenKind::Refresh)
            .map(|record| view(record, &caller))
            .collect();
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "tokens": tokens }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `DELETE /v1/sessions/{id}`: sign out of one session. `id` is a token id
/// or a session id; the whole session (the token's family) is revoked.
pub async fn revoke_session(state: AppState, headers: HeaderMap, id: String) -> Response {
    let result = async {
        let caller = authenticate::bearer(&state, &headers).await?;
        let id: Uuid = id
            .parse()
            .map_err(|_| Problem::invalid_request("the session id must be a UUID"))?;
        let records = state.store().list(&caller.holder.subject).await?;
        let family = records
            .iter()
            .find(|record| record.id == id || record.family == id)
            .map(|record| record.family)
            .ok_or_else(|| Problem::not_found("no such session"))?;
        let revoked = state
            .store()
            .revoke_family(&caller.holder.subject, family)
            .await?;
        tracing::info!(subject = %caller.holder.subject, session = %family, revoked, "session revoked");
        crate::metrics::revoked("session", revoked);
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "tokens_revoked": revoked }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}

/// `DELETE /v1/sessions`: sign out everywhere.
pub async fn revoke_all_sessions(state: AppState, headers: HeaderMap) -> Response {
    let result = async {
        let caller = authenticate::bearer(&state, &headers).await?;
        let revoked = state.store().revoke_all(&caller.holder.subject).await?;
        tracing::info!(subject = %caller.holder.subject, revoked, "signed out everywhere");
        crate::metrics::revoked("sign_out_everywhere", revoked);
        Ok::<_, Problem>(json(
            StatusCode::OK,
            &serde_json::json!({ "tokens_revoked": revoked }),
        ))
    };
    result.await.unwrap_or_else(Problem::into_response)
}
