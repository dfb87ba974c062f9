//! Where a request's outcome is recorded, once: a [`Refusal`] becomes its
//! response here and is logged and counted here; a request let through is
//! counted here. Nothing upstream logs or counts a refusal it merely
//! builds.

use http::Response;

use crate::challenge::{Challenger, Refusal, Unavailable};
use crate::metrics;

/// The response refusing a request for `refusal` (gRPC when `grpc`),
/// logged and counted.
pub(crate) fn refuse<B: Default>(
    challenger: &Challenger,
    refusal: &Refusal,
    grpc: bool,
) -> Response<B> {
    log(refusal);
    metrics::refused(refusal.outcome());
    challenger.respond(refusal, grpc)
}

/// A request an optional layer lets through anonymously despite
/// `refusal`: logged, counted as anonymous.
pub(crate) fn let_through(refusal: &Refusal) {
    log(refusal);
    metrics::passed(false);
}

/// A request authenticated: counted.
pub(crate) fn authenticated() {
    metrics::passed(true);
}

/// The log line of a refusal: debug for the client's mistakes, warn for an
/// unreachable or slow repository, error for a repository that refuses
/// (a permission or a corrupt record: a configuration problem). Never the
/// token; its public id when known.
fn log(refusal: &Refusal) {
    match refusal {
        Refusal::Missing => {}
        Refusal::InvalidRequest(reason) => {
            tracing::debug!(reason, "refused a malformed request");
        }
        Refusal::InvalidToken {
            description,
            token_id,
        } => {
            tracing::debug!(token_id = ?token_id, reason = description, "refused a token");
        }
        Refusal::WrongAudience { token_id } => {
            tracing::debug!(%token_id, "refused a token for another audience");
        }
        Refusal::InsufficientScope {
            scope, token_id, ..
        } => {
            tracing::debug!(%token_id, %scope, "refused: insufficient scope");
        }
        Refusal::Unavailable {
            token_id,
            cause: Unavailable::Failed(error),
        } => {
            if error.is_unavailable() {
                tracing::warn!(%token_id, %error, "token repository unavailable");
            } else {
                tracing::error!(%token_id, %error, "token repository refused the lookup");
            }
        }
        Refusal::Unavailable {
            token_id,
            cause: Unavailable::TimedOut(timeout),
        } => {
            tracing::warn!(%token_id, ?timeout, "token repository did not answer in time");
        }
    }
}
