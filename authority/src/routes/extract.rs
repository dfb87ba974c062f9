//! What the routes take out of a request: the peer address, the raw query,
//! decoded path segments, and the body (read up to the configured limit,
//! with or without `Content-Length`); and [`form_post`], all of it for the
//! OAuth endpoints' forms.

use std::future::{Ready, ready};

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use futures_util::{Stream, StreamExt as _};
use http::HeaderMap;
use percent_encoding::percent_decode_str;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::address::{ClientAddress, PeerAddr};
use crate::problem::Problem;
use crate::state::AppState;

/// The peer address of the connection, when the server recorded it.
pub(super) fn peer()
-> impl Filter<Extract = (Option<std::net::SocketAddr>,), Error = std::convert::Infallible> + Clone
{
    warp::ext::optional::<PeerAddr>().map(|peer: Option<PeerAddr>| peer.map(|PeerAddr(addr)| addr))
}

/// The raw query string, empty when there is none.
pub(super) fn raw_query()
-> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// A `{provider}` segment: decoded, and never one of the fixed routes next
/// to it (those answer 405 for other methods, not "no such provider").
pub(super) async fn provider_segment(raw: String) -> Result<String, Rejection> {
    let name = decoded(raw).await?;
    if matches!(name.as_str(), "callback" | "tokens" | "credentials") {
        return Err(warp::reject::not_found());
    }
    Ok(name)
}

/// Percent-decodes a path segment (usernames may contain `@` and `+`,
/// which clients may escape); invalid UTF-8 is a path that does not exist.
pub(super) async fn decoded(raw: String) -> Result<String, Rejection> {
    decode_segment(&raw).ok_or_else(warp::reject::not_found)
}

/// Decodes a raw path segment, or `None` when it is not valid UTF-8.
pub(super) fn decode_segment(raw: &str) -> Option<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// Reads the body, up to `limit` bytes, with or without Content-Length.
pub(super) fn body(
    limit: u64,
) -> impl Filter<Extract = (Result<Bytes, Problem>,), Error = Rejection> + Clone {
    warp::body::stream().then(move |stream| collect(stream, limit))
}

/// Reads a body's chunks, up to `limit` bytes: the tree's [`body`] filter
/// and the hot routes ([`super::hot`]) alike.
pub(super) async fn collect<S, B, E>(stream: S, limit: u64) -> Result<Bytes, Problem>
where
    S: Stream<Item = Result<B, E>>,
    B: bytes::Buf,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut stream = std::pin::pin!(stream);
    let mut collected = BytesMut::new();
    let mut discarded = 0_usize;
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|_| Problem::invalid_request("the request body could not be read"))?;
        if discarded > 0 || collected.len() + chunk.remaining() > limit {
            // Over the limit: read on (and drop) up to DRAIN_LIMIT more, so
            // that an ordinary client still reads the 413 instead of a
            // reset connection; beyond that, stop reading at all.
            discarded += chunk.remaining();
            if discarded > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if discarded > 0 {
        return Err(Problem::too_large());
    }
    Ok(collected.freeze())
}

/// How much of an oversized body is read and dropped before answering 413.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// `POST path` of an OAuth endpoint's form: `handler` gets the state, the
/// headers, the caller's address and the body read within `limit`; a body
/// refused on the way (too large, cut short) answers its problem. Boxed,
/// so that the route tree holds a pointer rather than the handler's
/// future.
pub(super) fn form_post<P, H, F>(
    path: P,
    state: &(
         impl Filter<Extract = (AppState,), Error = std::convert::Infallible>
         + Clone
         + Send
         + Sync
         + 'static
     ),
    limit: u64,
    handler: H,
) -> BoxedFilter<(Response,)>
where
    P: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
    H: Fn(AppState, HeaderMap, ClientAddress, Bytes) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    path.and(warp::post())
        .and(state.clone())
        .and(warp::header::headers_cloned())
        .and(peer())
        .and(body(limit))
        .then(
            move |state: AppState, headers: HeaderMap, peer, body: Result<Bytes, Problem>| {
                answer_form(state, headers, peer, body, handler.clone())
            },
        )
        .boxed()
}

/// An OAuth form endpoint's answer once its body is read (the tree's
/// [`form_post`] routes and the hot routes alike): the problem of a body
/// refused on the way, or `handler` with the caller's address.
///
/// A function returning the handler's own future rather than an `async`
/// one around it: that would be one more level whose state holds the
/// handler's future (over 1 KiB), copied into it on every request.
pub(super) fn answer_form<H, F>(
    state: AppState,
    headers: HeaderMap,
    peer: Option<std::net::SocketAddr>,
    body: Result<Bytes, Problem>,
    handler: H,
) -> Either<F, Ready<Response>>
where
    H: FnOnce(AppState, HeaderMap, ClientAddress, Bytes) -> F,
    F: Future<Output = Response>,
{
    match body {
        Ok(body) => {
            let address = state.client_address(peer, &headers);
            Either::Left(handler(state, headers, address, body))
        }
        Err(problem) => Either::Right(ready(problem.into_response())),
    }
}
