//! The whole HTTP surface as one warp filter tree: [`routes`].
//!
//! Every route answers with a [`Response`]; handlers build error responses
//! themselves through [`Problem`], and a last catch-all route answers what
//! no route took: 405 with the path's methods in `Allow`, or 404. Bodies are
//! read by `extract::body` with the configured limit, whether or not a
//! `Content-Length` is sent.

mod credentials;
mod extract;
mod hot;
mod unrouted;

use bytes::Bytes;
use http::HeaderMap;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use self::extract::{body, decoded, form_post, peer, provider_segment, raw_query};
pub use self::hot::{Hot, HotRoutes};
use self::unrouted::unrouted;
use crate::api::admin::Operation;
use crate::api::providers::ProviderOperation;
use crate::api::{admin, connect, health, me};
use crate::oauth::{introspect, metadata, revoke, token};
use crate::problem::Problem;
use crate::state::AppState;

/// Every route the server registers, as `(method, path)`; kept in step with
/// [`routes`] and the OpenAPI document by tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/v1/me"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{id}"),
    ("GET", "/v1/admin/users"),
    ("POST", "/v1/admin/users"),
    ("GET", "/v1/admin/users/{username}"),
    ("PATCH", "/v1/admin/users/{username}"),
    ("DELETE", "/v1/admin/users/{username}"),
    ("GET", "/v1/admin/clients"),
    ("POST", "/v1/admin/clients"),
    ("GET", "/v1/admin/clients/{client_id}"),
    ("PATCH", "/v1/admin/clients/{client_id}"),
    ("DELETE", "/v1/admin/clients/{client_id}"),
    ("POST", "/v1/admin/clients/{client_id}/secret"),
    ("GET", "/v1/admin/resources"),
    ("POST", "/v1/admin/resources"),
    ("DELETE", "/v1/admin/resources/{resource}"),
    ("GET", "/v1/admin/providers"),
    ("POST", "/v1/admin/providers"),
    ("GET", "/v1/admin/providers/{name}"),
    ("PUT", "/v1/admin/providers/{name}"),
    ("PATCH", "/v1/admin/providers/{name}"),
    ("DELETE", "/v1/admin/providers/{name}"),
    ("GET", "/v1/connect"),
    ("GET", "/v1/connect/callback"),
    ("GET", "/v1/connect/tokens"),
    ("GET", "/v1/connect/{provider}"),
    ("DELETE", "/v1/connect/{provider}"),
    ("GET", "/v1/connect/{provider}/offer"),
    ("GET", "/v1/connect/{provider}/token"),
    ("GET", "/v1/users/{subject}/connect/{provider}/token"),
    ("GET", "/v1/connect/credentials"),
    ("PUT", "/v1/connect/{provider}/credentials"),
    ("DELETE", "/v1/connect/{provider}/credentials"),
    ("GET", "/v1/users/{subject}/connect/{provider}/credentials"),
    ("GET", "/oauth/authorize"),
    ("POST", "/oauth/consent"),
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("GET", "/signin/federated"),
    ("POST", "/logout"),
    ("GET", "/account"),
    ("POST", "/account"),
    ("GET", "/connect/start"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.yaml"),
];

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// The authority's HTTP API.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let limit = state.config().max_body_bytes;
    // With METRICS_ADDR set, /metrics is served on that listener only.
    let separate_metrics = state.config().metrics_addr.is_some();
    let state = warp::any().map(move || state.clone());
    let headers = warp::header::headers_cloned();

    let token = form_post(warp::path!("oauth" / "token"), &state, limit, token::handle);
    let revoke = form_post(
        warp::path!("oauth" / "revoke"),
        &state,
        limit,
        revoke::handle,
    );
    let introspect = form_post(
        warp::path!("oauth" / "introspect"),
        &state,
        limit,
        introspect::handle,
    );
    let metadata = warp::path!(".well-known" / "oauth-authorization-server")
        .and(warp::get())
        .and(state.clone())
        .map(|state: AppState| metadata::handle(&state));
    let oauth = token
        .or(revoke)
        .unify()
        .or(introspect)
        .unify()
        .or(metadata)
        .unify()
        .boxed();

    let me_route = warp::path!("v1" / "me")
        .and(warp::get())
        .and(state.clone())
        .and(headers)
        .then(me::me);
    let sessions = warp::path!("v1" / "sessions")
        .and(warp::get())
        .and(state.clone())
        .and(headers)
        .then(me::sessions);
    let sign_out_everywhere = warp::path!("v1" / "sessions")
        .and(warp::delete())
        .and(state.clone())
        .and(headers)
        .then(me::revoke_all_sessions);
    let sign_out = warp::path!("v1" / "sessions" / String)
        .and(warp::delete())
        .and(state.clone())
        .and(headers)
        .then(|id: String, state, headers| me::revoke_session(state, headers, id));
    let holder = me_route
        .or(sessions)
        .unify()
        .or(sign_out_everywhere)
        .unify()
        .or(sign_out)
        .unify()
        .boxed();

    let admin_route = |operations: BoxedFilter<(Operation,)>| {
        operations
            .and(state.clone())
            .and(headers)
            .and(body(limit))
            .then(
                |operation, state, headers, body: Result<Bytes, Problem>| async move {
                    match body {
                        Ok(body) => admin::handle(state, headers, operation, body).await,
                        Err(problem) => problem.into_response(),
                    }
                },
            )
    };
    let users = warp::path!("v1" / "admin" / "users")
        .and(
            warp::get()
                .map(|| Operation::ListUsers)
                .or(warp::post().map(|| Operation::CreateUser))
                .unify(),
        )
        .boxed();
    let user = warp::path!("v1" / "admin" / "users" / String)
        .and_then(decoded)
        .and(
            warp::get()
                .map(|| Operation::GetUser as fn(String) -> Operation)
                .or(warp::patch().map(|| Operation::ChangeUser as fn(String) -> Operation))
                .unify()
                .or(warp::delete().map(|| Operation::RemoveUser as fn(String) -> Operation))
                .unify(),
        )
        .map(|name: String, operation: fn(String) -> Operation| operation(name))
        .boxed();
    let clients = warp::path!("v1" / "admin" / "clients")
        .and(
            warp::get()
                .map(|| Operation::ListClients)
                .or(warp::post().map(|| Operation::CreateClient))
                .unify(),
        )
        .boxed();
    let client = warp::path!("v1" / "admin" / "clients" / String)
        .and_then(decoded)
        .and(
            warp::get()
                .map(|| Operation::GetClient as fn(String) -> Operation)
                .or(warp::patch().map(|| Operation::ChangeClient as fn(String) -> Operation))
                .unify()
                .or(warp::delete().map(|| Operation::RemoveClient as fn(String) -> Operation))
                .unify(),
        )
        .map(|id: String, operation: fn(String) -> Operation| operation(id))
        .boxed();
    let client_secret = warp::path!("v1" / "admin" / "clients" / String / "secret")
        .and_then(decoded)
        .and(warp::post())
        .map(Operation::RotateClientSecret)
        .boxed();
    let resources = warp::path!("v1" / "admin" / "resources")
        .and(
            warp::get()
                .map(|| Operation::ListResources)
                .or(warp::post().map(|| Operation::AddResource))
                .unify(),
        )
        .boxed();
    let resource = warp::path!("v1" / "admin" / "resources" / String)
        .and_then(decoded)
        .and(warp::delete())
        .map(Operation::RemoveResource)
        .boxed();
    let providers = warp::path!("v1" / "admin" / "providers")
        .and(
            warp::get()
                .map(|| ProviderOperation::List)
                .or(warp::post().map(|| ProviderOperation::Add))
                .unify(),
        )
        .map(Operation::Providers)
        .boxed();
    let provider = warp::path!("v1" / "admin" / "providers" / String)
        .and_then(decoded)
        .and(
            warp::get()
                .map(|| ProviderOperation::Get as fn(String) -> ProviderOperation)
                .or(warp::put()
                    .map(|| ProviderOperation::Replace as fn(String) -> ProviderOperation))
                .unify()
                .or(warp::patch()
                    .map(|| ProviderOperation::Change as fn(String) -> ProviderOperation))
                .unify()
                .or(warp::delete()
                    .map(|| ProviderOperation::Remove as fn(String) -> ProviderOperation))
                .unify(),
        )
        .map(|name: String, operation: fn(String) -> ProviderOperation| {
            Operation::Providers(operation(name))
        })
        .boxed();
    let administration = admin_route(users)
        .or(admin_route(user))
        .unify()
        .or(admin_route(clients))
        .unify()
        .or(admin_route(client))
        .unify()
        .or(admin_route(client_secret))
        .unify()
        .or(admin_route(resources))
        .unify()
        .or(admin_route(resource))
        .unify()
        .or(admin_route(providers))
        .unify()
        .or(admin_route(provider))
        .unify()
        .boxed();

    let connected = connect_routes(&state, &headers);
    let credentials = credentials::routes(&state, &headers, limit);
    let browser = browser_routes(&state, &headers, limit);

    let healthz = warp::path!("healthz").and(warp::get()).map(health::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(state.clone())
        .then(health::readyz);
    let metrics_route =
        warp::path!("metrics")
            .and(warp::get())
            .and(state)
            .map(move |state: AppState| {
                if separate_metrics {
                    Problem::not_found("no such endpoint").into_response()
                } else {
                    metrics_response(&state)
                }
            });

    let openapi = warp::path!("openapi.yaml").and(warp::get()).map(|| {
        let mut response = Response::new(OPENAPI.into());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/yaml"),
        );
        response
    });

    oauth
        .or(holder)
        .unify()
        .or(administration)
        .unify()
        .or(credentials)
        .unify()
        .or(connected)
        .unify()
        .or(browser)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics_route)
        .unify()
        .or(openapi)
        .unify()
        .or(warp::path::full().map(|path: warp::path::FullPath| unrouted(path.as_str())))
        .unify()
        .boxed()
}

/// What the metrics listener (`METRICS_ADDR`) serves: `GET /metrics`, and
/// 404 for everything else.
pub fn metrics_routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .map(move || metrics_response(&state))
        .or(warp::any().map(|| Problem::not_found("no such endpoint").into_response()))
        .unify()
        .boxed()
}

/// The Prometheus exposition.
fn metrics_response(state: &AppState) -> Response {
    let mut response = Response::new(crate::metrics::render(state).into());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// The connected-services routes ([`crate::api::connect`]).
fn connect_routes<S, H>(state: &S, headers: &H) -> BoxedFilter<(Response,)>
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
    let offers = warp::path!("v1" / "connect")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .then(connect::offers);
    let callback = warp::path!("v1" / "connect" / "callback")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(connect::callback);
    let list = warp::path!("v1" / "connect" / "tokens")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .then(connect::connections);
    let status = warp::path!("v1" / "connect" / String)
        .and_then(provider_segment)
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .then(|provider, state, headers| connect::status(state, headers, provider));
    let disconnect = warp::path!("v1" / "connect" / String)
        .and_then(provider_segment)
        .and(warp::delete())
        .and(state.clone())
        .and(headers.clone())
        .then(|provider, state, headers| connect::disconnect(state, headers, provider));
    let token = warp::path!("v1" / "connect" / String / "token")
        .and_then(decoded)
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(|provider, state, headers, query| connect::token(state, headers, provider, query));
    let offer = warp::path!("v1" / "connect" / String / "offer")
        .and_then(decoded)
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(|provider, state, headers, query| connect::offer(state, headers, provider, query));
    let service_token = warp::path!("v1" / "users" / String / "connect" / String / "token")
        .and(warp::get())
        .and_then(|subject: String, provider: String| async move {
            Ok::<_, Rejection>((decoded(subject).await?, decoded(provider).await?))
        })
        .untuple_one()
        .and(state.clone())
        .and(headers.clone())
        .and(peer())
        .and(raw_query())
        .then(
            |subject, provider, state: AppState, headers: HeaderMap, peer, query| async move {
                let address = state.client_address(peer, &headers).ip();
                connect::service_token(state, headers, address, subject, provider, query).await
            },
        );
    offers
        .or(callback)
        .unify()
        .or(list)
        .unify()
        .or(status)
        .unify()
        .or(disconnect)
        .unify()
        .or(token)
        .unify()
        .or(offer)
        .unify()
        .or(service_token)
        .unify()
        .boxed()
}

/// The browser's routes: `/oauth/authorize`, the sign-in, consent and
/// account pages ([`crate::web`]).
fn browser_routes<S, H>(state: &S, headers: &H, limit: u64) -> BoxedFilter<(Response,)>
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
    use crate::oauth::authorize;
    use crate::web::{account, problem_page, signin};
    let authorize_route = warp::path!("oauth" / "authorize")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(authorize::authorize);
    let consent = warp::path!("oauth" / "consent")
        .and(warp::post())
        .and(state.clone())
        .and(headers.clone())
        .and(body(limit))
        .then(|state, headers, body: Result<Bytes, Problem>| async move {
            match body {
                Ok(body) => authorize::consent(state, headers, body).await,
                Err(problem) => problem_page(&problem),
            }
        });
    let signin_form = warp::path!("signin")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(signin::form);
    let signin_federated = warp::path!("signin" / "federated")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(crate::web::federated::start);
    let signin_submit = warp::path!("signin")
        .and(warp::post())
        .and(state.clone())
        .and(headers.clone())
        .and(peer())
        .and(body(limit))
        .then(
            |state: AppState, headers: HeaderMap, peer, body: Result<Bytes, Problem>| async move {
                match body {
                    Ok(body) => {
                        let address = state.client_address(peer, &headers);
                        signin::submit(state, headers, address, body).await
                    }
                    Err(problem) => problem_page(&problem),
                }
            },
        );
    let logout = warp::path!("logout")
        .and(warp::post())
        .and(state.clone())
        .and(headers.clone())
        .and(body(limit))
        .then(|state, headers, body: Result<Bytes, Problem>| async move {
            match body {
                Ok(body) => signin::logout(state, headers, body).await,
                Err(problem) => problem_page(&problem),
            }
        });
    let account_page = warp::path!("account")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(account::show);
    let account_forms = warp::path!("account")
        .and(warp::post())
        .and(state.clone())
        .and(headers.clone())
        .and(peer())
        .and(body(limit))
        .then(
            |state: AppState, headers: HeaderMap, peer, body: Result<Bytes, Problem>| async move {
                match body {
                    Ok(body) => {
                        let address = state.client_address(peer, &headers);
                        account::submit(state, headers, address, body).await
                    }
                    Err(problem) => problem_page(&problem),
                }
            },
        );
    let connect_start = warp::path!("connect" / "start")
        .and(warp::get())
        .and(state.clone())
        .and(headers.clone())
        .and(raw_query())
        .then(connect::start);
    authorize_route
        .or(consent)
        .unify()
        .or(signin_form)
        .unify()
        .or(signin_submit)
        .unify()
        .or(signin_federated)
        .unify()
        .or(logout)
        .unify()
        .or(account_page)
        .unify()
        .or(account_forms)
        .unify()
        .or(connect_start)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use yaml_rust2::{Yaml, YamlLoader};

    use super::extract::decode_segment;
    use super::unrouted::allowed_methods;
    use super::*;
    use crate::config::Config;

    /// Path segments are percent-decoded; invalid UTF-8 is refused.
    #[test]
    fn segments() {
        assert_eq!(
            decode_segment("alice%40example.com").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(decode_segment("%ff"), None);
    }

    /// 405 answers name the path's own methods.
    #[test]
    fn allowed_methods_per_path() {
        assert_eq!(allowed_methods("/oauth/token"), ["POST"]);
        assert_eq!(allowed_methods("/v1/sessions"), ["GET", "DELETE"]);
        assert_eq!(allowed_methods("/v1/connect/orcid"), ["GET", "DELETE"]);
        assert_eq!(allowed_methods("/v1/connect/tokens"), ["GET"]);
        assert_eq!(allowed_methods("/v1/connect/callback"), ["GET"]);
        assert_eq!(
            allowed_methods("/v1/admin/users/alice"),
            ["GET", "PATCH", "DELETE"]
        );
        assert!(allowed_methods("/v1/admin/users/").is_empty());
        assert!(allowed_methods("/nope").is_empty());
    }

    fn documented() -> BTreeSet<(String, String)> {
        let documents = YamlLoader::load_from_str(OPENAPI).expect("openapi.yaml is YAML");
        let Yaml::Hash(paths) = &documents[0]["paths"] else {
            panic!("openapi.yaml has no paths");
        };
        let mut routes = BTreeSet::new();
        for (path, item) in paths {
            let Yaml::Hash(operations) = item else {
                continue;
            };
            for method in operations.keys().filter_map(Yaml::as_str) {
                if ["get", "post", "put", "patch", "delete"].contains(&method) {
                    routes.insert((
                        method.to_ascii_uppercase(),
                        path.as_str().expect("path").to_owned(),
                    ));
                }
            }
        }
        routes
    }

    /// Every registered route is documented in openapi.yaml, and every
    /// documented operation is registered.
    #[test]
    fn openapi_documents_exactly_the_routes() {
        let registered: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(documented(), registered);
    }

    /// The route table is the filter tree: every listed route is answered
    /// by a handler (not the 404 / 405 of unknown routes), and every other
    /// method on those paths is 405.
    #[tokio::test]
    async fn route_table_matches_the_filter_tree() {
        let redis = token_test_harness::RedisServer::start();
        let mut values = std::collections::BTreeMap::new();
        values.insert("REDIS_URL".to_owned(), redis.url());
        values.insert("ARGON2_MEMORY_KIB".to_owned(), "64".to_owned());
        values.insert("ARGON2_ITERATIONS".to_owned(), "1".to_owned());
        let state = AppState::new(Config::from_values(&values).expect("config")).expect("state");
        let filter = routes(state);
        let concrete = |path: &str| {
            path.replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{username}", "nobody")
                .replace("{client_id}", "nobody")
                .replace("{provider}", "nobody")
                .replace("{subject}", "nobody")
        };
        for (method, path) in ROUTES {
            let response = warp::test::request()
                .method(method)
                .path(&concrete(path))
                .reply(&filter)
                .await;
            let body = String::from_utf8_lossy(response.body());
            let unrouted = response.status() == http::StatusCode::METHOD_NOT_ALLOWED
                || body.contains("no such endpoint");
            assert!(
                !unrouted,
                "{method} {path} is listed but not routed: {body}"
            );
            for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                if ROUTES.iter().any(|(m, p)| *m == other && p == path) {
                    continue;
                }
                let response = warp::test::request()
                    .method(other)
                    .path(&concrete(path))
                    .reply(&filter)
                    .await;
                assert_eq!(
                    response.status(),
                    http::StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path} is routed but not listed"
                );
            }
        }
    }
}
