//! Account administration, shared by the admin HTTP API and the CLI.
//!
//! Whatever weakens an account's existing tokens revokes them: disabling or
//! removing a user, changing its password or scopes; disabling or removing a
//! client, or changing its scopes. The change is written first and the
//! revocation second, so a login racing with the change either sees the new
//! account or has its tokens revoked (the store's revocation generation
//! refuses a grant that checked the old password).
//!
//! Every change is safe to retry: when the revocation fails (503), the
//! account is already changed, and a retry of the same request finds nothing
//! left to change. So revocation follows from what the request asks for, not
//! from what it changed: a request that sets a password, disables, or sets
//! scopes revokes every time. Removal first disables the account, then
//! revokes, forgets the connected services and deletes the record last: a
//! removal that failed half-way leaves a disabled account that a retry
//! finds and finishes.
//!
//! - `users`: users (create, change, remove, read);
//! - `clients`: clients, their secrets and limits;
//! - `resources`: registered resource servers;
//! - this module: the checks and the revocation they share.

use token_repository::TokenWriter as _;
use zeroize::Zeroizing;

use crate::problem::Problem;
use crate::state::AppState;

mod clients;
mod resources;
mod users;

pub use self::clients::{
    ClientChange, ClientView, MAX_SECRET_GRACE, MAX_VIEW_PROVIDERS, NewClient, change_client,
    check_view_providers, client, clients, create_client, parse_networks, remove_client,
    rotate_secret,
};
pub use self::resources::{ResourceView, add_resource, remove_resource, resources};
pub use self::users::{
    NewUser, UserChange, UserView, change_user, create_user, remove_user, user, users,
};

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Passwords longer than this are refused (hashing cost stays bounded).
pub const MAX_PASSWORD_LEN: usize = 1024;

fn check_password(password: &str) -> Result<(), Problem> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(Problem::invalid_request(format!(
            "the password must have {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Problem::invalid_request(
            "the password contains control characters",
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, value: Option<&str>) -> Result<(), Problem> {
    match value {
        Some(text) if text.len() > 256 || text.chars().any(char::is_control) => {
            Err(Problem::invalid_request(format!(
                "{field} must be at most 256 characters without control characters"
            )))
        }
        _ => Ok(()),
    }
}

async fn hash(state: &AppState, secret: Zeroizing<String>) -> Result<String, Problem> {
    state.hasher().hash(secret).await.map_err(Problem::from)
}

async fn revoke_all(state: &AppState, subject: &str) -> Result<usize, Problem> {
    #[cfg(test)]
    if state.accounts().faults().revocation_fails() {
        return Err(Problem::from(token_repository::Error::Timeout(
            std::time::Duration::ZERO,
        )));
    }
    let revoked = state.store().revoke_all(subject).await?;
    tracing::info!(%subject, revoked, "all tokens of the subject revoked");
    crate::metrics::revoked("account_change", revoked);
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http::StatusCode;
    use token_repository::Scopes;
    use token_test_harness::RedisServer;

    use super::*;
    use crate::test_support::{live, login, state, token};

    const PASSWORD: &str = "a-long-password";

    async fn alice(state: &AppState) {
        create_user(
            state,
            NewUser {
                username: "alice".into(),
                password: Zeroizing::new(PASSWORD.into()),
                name: None,
                email: None,
                scopes: Scopes::parse("read write").expect("scopes"),
            },
        )
        .await
        .expect("user");
    }

    async fn access_token(state: &AppState) -> String {
        let (status, body) = login(state, "alice", PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().expect("access").to_owned();
        assert!(live(state, &access).await);
        access
    }

    fn fail_next_revocation(state: &AppState) {
        state
            .accounts()
            .faults()
            .failing_revocations
            .store(1, Ordering::SeqCst);
    }

    /// A disable or scope change whose revocation failed (503) revokes when
    /// retried, although the retry finds nothing left to change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retried_user_changes_revoke() {
        let redis = RedisServer::start();
        let state = state(&redis);
        alice(&state).await;

        let access = access_token(&state).await;
        let disable = || UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        fail_next_revocation(&state);
        let failed = change_user(&state, "alice", disable())
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(user(&state, "alice").await.expect("user").disabled);
        assert!(live(&state, &access).await, "nothing revoked yet");
        let (_, revoked) = change_user(&state, "alice", disable())
            .await
            .expect("retry");
        assert!(revoked >= 2, "{revoked}");
        assert!(!live(&state, &access).await, "the retry revoked");

        let enable = UserChange {
            disabled: Some(false),
            ..UserChange::default()
        };
        let (_, revoked) = change_user(&state, "alice", enable).await.expect("enable");
        assert_eq!(revoked, 0, "enabling weakens nothing");
        let access = access_token(&state).await;
        let narrow = || UserChange {
            scopes: Some(Scopes::parse("read").expect("scopes")),
            ..UserChange::default()
        };
        fail_next_revocation(&state);
        let failed = change_user(&state, "alice", narrow())
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        change_user(&state, "alice", narrow()).await.expect("retry");
        assert!(!live(&state, &access).await, "the retry revoked");
    }

    /// A removal whose revocation failed leaves a disabled user that the
    /// retry finds and removes, revoking its tokens; after that, 404.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retried_user_removal_completes() {
        let redis = RedisServer::start();
        let state = state(&redis);
        alice(&state).await;
        let access = access_token(&state).await;

        fail_next_revocation(&state);
        let failed = remove_user(&state, "alice")
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        assert!(user(&state, "alice").await.expect("kept").disabled);
        let (status, _) = login(&state, "alice", PASSWORD).await;
        assert_eq!(status, 400, "a half-removed user cannot log in");

        let revoked = remove_user(&state, "alice").await.expect("retry");
        assert!(revoked >= 2, "{revoked}");
        assert!(!live(&state, &access).await);
        assert_eq!(
            user(&state, "alice").await.expect_err("gone").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            remove_user(&state, "alice")
                .await
                .expect_err("gone")
                .status(),
            StatusCode::NOT_FOUND
        );
    }

    /// The same for clients: a retried disable or removal revokes the
    /// client's own tokens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retried_client_changes_revoke() {
        let redis = RedisServer::start();
        let state = state(&redis);
        let new = NewClient {
            scopes: Scopes::parse("jobs").expect("scopes"),
            ..NewClient::default()
        };
        let (_, secret) = create_client(&state, "worker", new).await.expect("client");
        let client_token = |state: AppState, secret: Zeroizing<String>| async move {
            let (status, body) = token(
                &state,
                &format!(
                    "grant_type=client_credentials&client_id=worker&client_secret={}",
                    secret.as_str()
                ),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().expect("access").to_owned()
        };

        let secret = secret.expect("a confidential client has a secret");
        let access = client_token(state.clone(), secret.clone()).await;
        let disable = || ClientChange {
            disabled: Some(true),
            ..ClientChange::default()
        };
        fail_next_revocation(&state);
        let failed = change_client(&state, "worker", disable())
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        change_client(&state, "worker", disable())
            .await
            .expect("retry");
        assert!(!live(&state, &access).await, "the retry revoked");

        let enable = ClientChange {
            disabled: Some(false),
            ..ClientChange::default()
        };
        change_client(&state, "worker", enable)
            .await
            .expect("enable");
        let access = client_token(state.clone(), secret).await;
        fail_next_revocation(&state);
        let failed = remove_client(&state, "worker")
            .await
            .expect_err("revocation fails");
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(live(&state, &access).await);
        remove_client(&state, "worker").await.expect("retry");
        assert!(!live(&state, &access).await, "the retry revoked");
        assert_eq!(
            remove_client(&state, "worker")
                .await
                .expect_err("gone")
                .status(),
            StatusCode::NOT_FOUND
        );
    }
}
