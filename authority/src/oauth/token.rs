//! `POST /oauth/token` (RFC 6749): the form parsed into a
//! [`TokenRequest`], run, and answered; the grants themselves are in
//! [`super::grant`].

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use token_repository::{Minted, Timestamp};
use warp::reply::Response;

use super::grant::TokenRequest;
use crate::address::ClientAddress;
use crate::form::Form;
use crate::metrics;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// The success body (RFC 6749 §5.1).
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: String,
}

/// Handles one token request; every outcome is a response.
pub async fn handle(
    state: AppState,
    headers: HeaderMap,
    address: ClientAddress,
    body: bytes::Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let (grant_type, result) = match Form::from_request(&headers, &body) {
        Ok(form) => {
            let grant_type = metrics::grant_label(form.get("grant_type"));
            let request = TokenRequest::parse(&headers, &form, state.config());
            drop(form);
            let result = match request {
                Ok(request) => request.execute(&state, address).await,
                Err(problem) => Err(problem),
            };
            (grant_type, result)
        }
        Err(error) => ("none", Err(Problem::invalid_request(error.to_string()))),
    };
    if grant_type == "password" {
        metrics::login(started.elapsed(), result.is_ok());
    }
    match result {
        Ok(minted) => {
            metrics::issued(grant_type);
            respond(&minted)
        }
        Err(problem) => {
            metrics::refused(grant_type, problem.code());
            problem.into_response()
        }
    }
}

fn respond(minted: &Minted) -> Response {
    let access = &minted.access;
    let now = Timestamp::now();
    json(
        StatusCode::OK,
        &TokenResponse {
            access_token: access.token.expose_secret(),
            token_type: "Bearer",
            expires_in: access.record.seconds_left_at(now),
            refresh_token: minted
                .refresh
                .as_ref()
                .map(|refresh| refresh.token.expose_secret()),
            scope: access.record.holder.scopes.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use token_test_harness::RedisServer;
    use zeroize::Zeroizing;

    use crate::admin::{self, NewUser, UserChange};
    use crate::test_support::{login, state};

    /// A password change that lands after a login read the user record
    /// (paused there by the store) leaves the old password without a token:
    /// the login checks the record it reads after the revocation generation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_change_between_the_reads_refuses_the_old_password() {
        let redis = RedisServer::start();
        let state = state(&redis);
        admin::create_user(
            &state,
            NewUser {
                username: "alice".into(),
                password: Zeroizing::new("old-password".into()),
                name: None,
                email: None,
                scopes: token_repository::Scopes::empty(),
            },
        )
        .await
        .expect("user");
        assert_eq!(login(&state, "alice", "old-password").await.0, 200);

        let (reached, release) = state.accounts().faults().after_user_read.arm();
        let racing = tokio::spawn({
            let state = state.clone();
            async move { login(&state, "alice", "old-password").await }
        });
        tokio::time::timeout(Duration::from_secs(30), reached)
            .await
            .expect("the login reads the user in time")
            .expect("pause reached");
        let change = UserChange {
            password: Some(Zeroizing::new("new-password".into())),
            ..UserChange::default()
        };
        admin::change_user(&state, "alice", change)
            .await
            .expect("password changed");
        release.send(()).expect("login still waiting");
        let (status, body) = racing.await.expect("login task");
        assert_eq!(status, 400, "the old password yielded tokens");
        assert_eq!(body["error"], "invalid_grant");
        assert!(body.get("access_token").is_none());

        let (status, body) = login(&state, "alice", "new-password").await;
        assert_eq!(status, 200, "{body}");
    }
}
