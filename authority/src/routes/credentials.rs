//! The routes of providers of a credentials kind
//! ([`crate::api::credentials`]); matched before the other connect routes,
//! so that `/v1/connect/credentials` is never taken for a provider name.

use bytes::Bytes;
use http::HeaderMap;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::extract::{body, decoded, peer};
use crate::api::credentials;
use crate::problem::Problem;
use crate::state::AppState;

/// `GET /v1/connect/credentials`, `PUT` and `DELETE
/// /v1/connect/{provider}/credentials` and `GET
/// /v1/users/{subject}/connect/{provider}/credentials`.
pub(super) fn routes<S, H>(state: &S, headers: &H, limit: u64) -> BoxedFilter<(Response,)>
where
    S: Filter<Extract = (AppState,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    H: Filter<Extract = (HeaderMap,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let list = warp::path!("v1" / "connect" / "credentials")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .then(credentials::list);
    let store = warp::path!("v1" / "connect" / String / "credentials")
        .and_then(decoded)
        .and(warp::put())
        .and(state.clone())
        .and(headers.clone())
        .and(body(limit))
        .then(
            |provider, state, headers, body: Result<Bytes, Problem>| async move {
                match body {
                    Ok(body) => credentials::store(state, headers, provider, body).await,
                    Err(problem) => problem.into_response(),
                }
            },
        );
    let remove = warp::path!("v1" / "connect" / String / "credentials")
        .and_then(decoded)
        .and(warp::delete())
        .and(state.clone())
        .and(headers.clone())
        .then(|provider, state, headers| credentials::remove(state, headers, provider));
    let service = warp::path!("v1" / "users" / String / "connect" / String / "credentials")
        .and(warp::get())
        .and_then(|subject: String, provider: String| async move {
            Ok::<_, Rejection>((decoded(subject).await?, decoded(provider).await?))
        })
        .untuple_one()
        .and(state.clone())
        .and(headers.clone())
        .and(peer())
        .then(
            |subject, provider, state: AppState, headers: HeaderMap, peer| async move {
                let address = state.client_address(peer, &headers).ip();
                credentials::service_read(state, headers, address, subject, provider).await
            },
        );
    list.or(store)
        .unify()
        .or(remove)
        .unify()
        .or(service)
        .unify()
        .boxed()
}
