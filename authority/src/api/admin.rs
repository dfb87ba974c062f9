//! `/v1/admin/users`, `/v1/admin/clients`, `/v1/admin/resources` and
//! `/v1/admin/providers` (bearer token with scope `admin`): the CLI's
//! operations over HTTP, and the provider registry
//! ([`crate::api::providers`]).

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use token_repository::Scopes;
use warp::reply::Response;
use zeroize::Zeroizing;

use crate::admin::{
    self, ClientChange, ClientView, NewClient, NewUser, UserChange, UserView, parse_networks,
};
use crate::api::json::{nullable, parse, present};
use crate::authenticate;
use crate::problem::{Problem, json};
use crate::state::AppState;

/// The scope every admin route requires.
pub const ADMIN_SCOPE: &str = "admin";

/// An admin operation, as the route sees it.
#[derive(Debug)]
pub enum Operation {
    /// `GET /v1/admin/users`
    ListUsers,
    /// `POST /v1/admin/users`
    CreateUser,
    /// `GET /v1/admin/users/{username}`
    GetUser(String),
    /// `PATCH /v1/admin/users/{username}`
    ChangeUser(String),
    /// `DELETE /v1/admin/users/{username}`
    RemoveUser(String),
    /// `GET /v1/admin/clients`
    ListClients,
    /// `POST /v1/admin/clients`
    CreateClient,
    /// `GET /v1/admin/clients/{id}`
    GetClient(String),
    /// `PATCH /v1/admin/clients/{id}`
    ChangeClient(String),
    /// `DELETE /v1/admin/clients/{id}`
    RemoveClient(String),
    /// `POST /v1/admin/clients/{id}/secret`
    RotateClientSecret(String),
    /// `GET /v1/admin/resources`
    ListResources,
    /// `POST /v1/admin/resources`
    AddResource,
    /// `DELETE /v1/admin/resources/{resource}` (hex tag or URI)
    RemoveResource(String),
    /// `/v1/admin/providers…`
    Providers(crate::api::providers::ProviderOperation),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddResourceBody {
    uri: String,
    #[serde(default, deserialize_with = "present")]
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateSecretBody {
    #[serde(default, deserialize_with = "present")]
    grace_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    username: String,
    password: String,
    name: Option<String>,
    email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeUserBody {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "present")]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClientBody {
    client_id: String,
    #[serde(default, deserialize_with = "present")]
    scope: Option<String>,
    #[serde(default)]
    introspect: bool,
    #[serde(default)]
    view_access_tokens: bool,
    #[serde(default)]
    view_providers: Option<Vec<String>>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    first_party: bool,
    #[serde(default)]
    resources: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeClientBody {
    #[serde(default, deserialize_with = "present")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "present")]
    introspect: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    view_access_tokens: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    view_providers: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    allowed_ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    resources: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    disabled: Option<bool>,
}

fn scopes(text: Option<&str>) -> Result<Scopes, Problem> {
    Scopes::parse(text.unwrap_or_default())
        .map_err(|error| Problem::invalid_request(error.to_string()))
}

/// Runs one admin operation for a caller bearing an `admin` token.
pub async fn handle(
    state: AppState,
    headers: HeaderMap,
    operation: Operation,
    body: bytes::Bytes,
) -> Response {
    let result = async {
        let caller = authenticate::bearer_with_scope(&state, &headers, ADMIN_SCOPE).await?;
        tracing::info!(admin = ?caller.holder.username, token_id = %caller.id, ?operation, "admin operation");
        run(&state, &headers, operation, &body).await
    };
    result.await.unwrap_or_else(Problem::into_response)
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    operation: Operation,
    body: &[u8],
) -> Result<Response, Problem> {
    Ok(match operation {
        Operation::ListUsers => {
            let users: Vec<UserView> = admin::users(state)
                .await?
                .iter()
                .map(UserView::from)
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "users": users }))
        }
        Operation::CreateUser => {
            let body: CreateUserBody = parse(headers, body)?;
            let user = admin::create_user(
                state,
                NewUser {
                    username: body.username,
                    password: Zeroizing::new(body.password),
                    name: body.name,
                    email: body.email,
                    scopes: scopes(body.scope.as_deref())?,
                },
            )
            .await?;
            json(StatusCode::CREATED, &UserView::from(&user))
        }
        Operation::GetUser(username) => json(
            StatusCode::OK,
            &UserView::from(&admin::user(state, &username).await?),
        ),
        Operation::ChangeUser(username) => {
            let body: ChangeUserBody = parse(headers, body)?;
            let change = UserChange {
                name: body.name,
                email: body.email,
                scopes: body
                    .scope
                    .as_deref()
                    .map(|text| scopes(Some(text)))
                    .transpose()?,
                disabled: body.disabled,
                password: body.password.map(Zeroizing::new),
            };
            let (user, revoked) = admin::change_user(state, &username, change).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({ "user": UserView::from(&user), "tokens_revoked": revoked }),
            )
        }
        Operation::RemoveUser(username) => {
            let revoked = admin::remove_user(state, &username).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({ "tokens_revoked": revoked }),
            )
        }
        Operation::ListClients => {
            let clients: Vec<ClientView> = admin::clients(state)
                .await?
                .iter()
                .map(ClientView::from)
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "clients": clients }))
        }
        Operation::CreateClient => {
            let body: CreateClientBody = parse(headers, body)?;
            let (client, secret) = admin::create_client(
                state,
                &body.client_id,
                NewClient {
                    scopes: scopes(body.scope.as_deref())?,
                    introspect: body.introspect,
                    view_access_tokens: body.view_access_tokens,
                    view_providers: body.view_providers,
                    allowed_ips: parse_networks(&body.allowed_ips)?,
                    redirect_uris: body.redirect_uris,
                    public: body.public,
                    first_party: body.first_party,
                    resources: body.resources,
                },
            )
            .await?;
            let view = ClientView::from(&client);
            json(
                StatusCode::CREATED,
                &serde_json::json!({
                    "client_id": view.client_id,
                    "client_secret": secret.as_ref().map(|secret| secret.as_str()),
                    "scope": view.scope,
                    "introspect": view.introspect,
                    "view_access_tokens": view.view_access_tokens,
                    "view_providers": view.view_providers,
                    "allowed_ips": view.allowed_ips,
                    "redirect_uris": view.redirect_uris,
                    "public": view.public,
                    "first_party": view.first_party,
                    "resources": view.resources,
                    "disabled": view.disabled,
                    "created_at": view.created_at,
                }),
            )
        }
        Operation::GetClient(client_id) => json(
            StatusCode::OK,
            &ClientView::from(&admin::client(state, &client_id).await?),
        ),
        Operation::ChangeClient(client_id) => {
            let body: ChangeClientBody = parse(headers, body)?;
            let change = ClientChange {
                scopes: body
                    .scope
                    .as_deref()
                    .map(|text| scopes(Some(text)))
                    .transpose()?,
                introspect: body.introspect,
                view_access_tokens: body.view_access_tokens,
                view_providers: body.view_providers,
                allowed_ips: body
                    .allowed_ips
                    .as_deref()
                    .map(parse_networks)
                    .transpose()?,
                resources: body.resources,
                disabled: body.disabled,
            };
            let (client, revoked) = admin::change_client(state, &client_id, change).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({ "client": ClientView::from(&client), "tokens_revoked": revoked }),
            )
        }
        Operation::RotateClientSecret(client_id) => {
            // An empty body is no grace period.
            let body: RotateSecretBody = if body.iter().all(u8::is_ascii_whitespace) {
                RotateSecretBody::default()
            } else {
                parse(headers, body)?
            };
            let grace = std::time::Duration::from_secs(body.grace_seconds.unwrap_or(0));
            let (client, secret) = admin::rotate_secret(state, &client_id, grace).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "client_id": client.client_id,
                    "client_secret": secret.as_str(),
                    "previous_secret_expires_at": client
                        .previous_secret
                        .as_ref()
                        .map(|previous| previous.expires_at.as_unix_secs()),
                }),
            )
        }
        Operation::RemoveClient(client_id) => {
            let revoked = admin::remove_client(state, &client_id).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({ "tokens_revoked": revoked }),
            )
        }
        Operation::ListResources => json(
            StatusCode::OK,
            &serde_json::json!({ "resources": admin::resources(state).await? }),
        ),
        Operation::AddResource => {
            let body: AddResourceBody = parse(headers, body)?;
            let view =
                admin::add_resource(state, &body.uri, &scopes(body.scope.as_deref())?).await?;
            json(StatusCode::CREATED, &view)
        }
        Operation::RemoveResource(name) => {
            json(StatusCode::OK, &admin::remove_resource(state, &name).await?)
        }
        Operation::Providers(operation) => {
            crate::api::providers::run(state, headers, operation, body).await?
        }
    })
}

#[cfg(test)]
#[path = "admin_proptests.rs"]
mod proptests;
