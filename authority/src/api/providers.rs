//! `/v1/admin/providers` (bearer token with scope `admin`): the provider
//! registry at run time (Sciebo RDS's `addService` / `removeService`).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/admin/providers` | every provider: the file's (`source: file`, read-only) and the API's |
//! | `POST /v1/admin/providers` | add one: the fields of a `[[providers]]` table, `client_secret` sealed with `CONNECT_KEYS` |
//! | `GET /v1/admin/providers/{name}` | one |
//! | `PUT /v1/admin/providers/{name}` | replace its table (without `client_secret`: the stored one is kept) |
//! | `PATCH /v1/admin/providers/{name}` | change some fields (`null` removes one): `{"enabled": false}` |
//! | `DELETE /v1/admin/providers/{name}` | remove it: 202, its connections are deleted in the background |
//!
//! The broker does the work ([`token_broker::connect::catalog`]); its
//! errors become responses here.

use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use token_broker::CatalogError;
use warp::reply::Response;

use crate::api::json::parse;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// A provider operation, as the route sees it.
#[derive(Debug)]
pub enum ProviderOperation {
    /// `GET /v1/admin/providers`
    List,
    /// `POST /v1/admin/providers`
    Add,
    /// `GET /v1/admin/providers/{name}`
    Get(String),
    /// `PUT /v1/admin/providers/{name}`
    Replace(String),
    /// `PATCH /v1/admin/providers/{name}`
    Change(String),
    /// `DELETE /v1/admin/providers/{name}`
    Remove(String),
}

/// Why a change to the providers was refused: 400 for a field (named,
/// never its value), 404, 409 for a read-only, taken or full name or a
/// missing setting, 503 when Redis fails.
impl From<CatalogError> for Problem {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Invalid { .. } => Problem::invalid_request(error.to_string()),
            CatalogError::Unknown => Problem::not_found("no such provider"),
            CatalogError::ReadOnly(_)
            | CatalogError::Exists(_)
            | CatalogError::Removing(_)
            | CatalogError::Full
            | CatalogError::NotConfigured(_)
            | CatalogError::Conflict => Problem::conflict(error.to_string()),
            CatalogError::Store(error) => error.into(),
            CatalogError::Internal(_) => Problem::internal(&error),
        }
    }
}

/// Runs `operation` for an authenticated administrator.
///
/// # Errors
///
/// A [`Problem`] for the response.
pub async fn run(
    state: &AppState,
    headers: &HeaderMap,
    operation: ProviderOperation,
    body: &[u8],
) -> Result<Response, Problem> {
    let connect = state.connect();
    Ok(match operation {
        ProviderOperation::List => json(
            StatusCode::OK,
            &serde_json::json!({ "providers": connect.provider_views().await? }),
        ),
        ProviderOperation::Add => {
            let table: Map<String, Value> = parse(headers, body)?;
            json(StatusCode::CREATED, &connect.add_provider(table).await?)
        }
        ProviderOperation::Get(name) => json(StatusCode::OK, &connect.provider_view(&name).await?),
        ProviderOperation::Replace(name) => {
            let table: Map<String, Value> = parse(headers, body)?;
            json(
                StatusCode::OK,
                &connect.replace_provider(&name, table).await?,
            )
        }
        ProviderOperation::Change(name) => {
            let patch: Map<String, Value> = parse(headers, body)?;
            json(
                StatusCode::OK,
                &connect.change_provider(&name, patch).await?,
            )
        }
        ProviderOperation::Remove(name) => {
            connect.remove_provider(&name).await?;
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "name": name, "status": "removing" }),
            )
        }
    })
}
