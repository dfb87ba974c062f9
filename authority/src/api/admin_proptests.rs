//! Property tests of the admin API's JSON bodies: any body is a value or a
//! 400 that never echoes a password; bodies written from values read back
//! as those values (absent, `null` and set kept apart in PATCH bodies).
//! Cases per property: `PROPTEST_CASES` (256 by default, what CI runs).

use http::HeaderMap;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{ChangeClientBody, ChangeUserBody, CreateClientBody, CreateUserBody};
use crate::api::json::parse;
use crate::problem::Problem;

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,20}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A field name of one of the bodies, or another one.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "username",
            "password",
            "name",
            "email",
            "scope",
            "disabled",
            "client_id",
            "introspect",
            "view_access_tokens",
            "view_providers",
            "allowed_ips",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

/// Runs every admin body type over `body`; every refusal is a 400
/// `invalid_request`.
fn parse_all(body: &[u8]) -> Vec<Result<(), Problem>> {
    let headers = json_headers();
    vec![
        parse::<CreateUserBody>(&headers, body).map(drop),
        parse::<ChangeUserBody>(&headers, body).map(drop),
        parse::<CreateClientBody>(&headers, body).map(drop),
        parse::<ChangeClientBody>(&headers, body).map(drop),
    ]
}

/// `Some(None)` as `null`, `Some(Some(v))` as `v`, `None` left out.
fn put<T: Into<Value>>(object: &mut Map<String, Value>, name: &str, value: Option<Option<T>>) {
    match value {
        None => {}
        Some(None) => {
            object.insert(name.to_owned(), Value::Null);
        }
        Some(Some(value)) => {
            object.insert(name.to_owned(), value.into());
        }
    }
}

fn body(object: Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(&Value::Object(object)).expect("serialise")
}

proptest! {
    /// Any bytes, any JSON, any object of the bodies' field names with
    /// values of any type: parsed or refused with 400 `invalid_request`,
    /// never a panic, and the refusal never quotes the password sent.
    #[test]
    fn admin_bodies_never_panic(
        raw in any::<Vec<u8>>(),
        value in any_json(),
        fields in prop::collection::btree_map(field(), any_json(), 0..8),
        password in "[A-Za-z0-9]{12,24}",
    ) {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        object.insert("password".into(), Value::String(password.clone()));
        let with_password = body(object);
        let inputs = [raw, serde_json::to_vec(&value).expect("serialise"), with_password];
        for input in &inputs {
            for result in parse_all(input) {
                if let Err(problem) = result {
                    prop_assert_eq!(problem.status(), http::StatusCode::BAD_REQUEST);
                    prop_assert_eq!(problem.code(), "invalid_request");
                    prop_assert!(!problem.description().contains(&password));
                }
            }
        }
    }

    /// A create-user body written from values reads back as them.
    #[test]
    fn create_user_round_trip(
        username in any::<String>(),
        password in any::<String>(),
        name in any::<Option<String>>(),
        email in any::<Option<String>>(),
        scope in any::<Option<String>>(),
    ) {
        let mut object = Map::new();
        object.insert("username".into(), json!(username));
        object.insert("password".into(), json!(password));
        put(&mut object, "name", name.clone().map(Some));
        put(&mut object, "email", email.clone().map(Some));
        put(&mut object, "scope", scope.clone().map(Some));
        let parsed: CreateUserBody = parse(&json_headers(), &body(object)).expect("valid");
        prop_assert_eq!(parsed.username, username);
        prop_assert_eq!(parsed.password, password);
        prop_assert_eq!(parsed.name, name);
        prop_assert_eq!(parsed.email, email);
        prop_assert_eq!(parsed.scope, scope);
    }

    /// A change-user body keeps "leave", "clear" (`null`) and "set" apart
    /// for name and email; the other fields may be left out or set, and
    /// `null` for them is refused.
    #[test]
    fn change_user_round_trip(
        name in any::<Option<Option<String>>>(),
        email in any::<Option<Option<String>>>(),
        scope in any::<Option<String>>(),
        disabled in any::<Option<bool>>(),
        password in any::<Option<String>>(),
    ) {
        let mut object = Map::new();
        put(&mut object, "name", name.clone());
        put(&mut object, "email", email.clone());
        put(&mut object, "scope", scope.clone().map(Some));
        put(&mut object, "disabled", disabled.map(Some));
        put(&mut object, "password", password.clone().map(Some));
        let parsed: ChangeUserBody = parse(&json_headers(), &body(object.clone())).expect("valid");
        prop_assert_eq!(parsed.name, name);
        prop_assert_eq!(parsed.email, email);
        prop_assert_eq!(parsed.scope, scope);
        prop_assert_eq!(parsed.disabled, disabled);
        prop_assert_eq!(parsed.password, password);
        for field in ["scope", "disabled", "password"] {
            let mut nulled = object.clone();
            nulled.insert(field.into(), Value::Null);
            prop_assert!(parse::<ChangeUserBody>(&json_headers(), &body(nulled)).is_err());
        }
    }

    /// Client bodies, created and changed, read back as written.
    #[test]
    fn client_bodies_round_trip(
        client_id in any::<String>(),
        scope in any::<Option<String>>(),
        introspect in any::<Option<bool>>(),
        view_access_tokens in any::<Option<bool>>(),
        allowed_ips in proptest::option::of(prop::collection::vec(any::<String>(), 0..8)),
        disabled in any::<Option<bool>>(),
    ) {
        let mut create = Map::new();
        create.insert("client_id".into(), json!(client_id));
        put(&mut create, "scope", scope.clone().map(Some));
        put(&mut create, "introspect", introspect.map(Some));
        put(&mut create, "view_access_tokens", view_access_tokens.map(Some));
        put(&mut create, "allowed_ips", allowed_ips.clone().map(Some));
        let parsed: CreateClientBody = parse(&json_headers(), &body(create)).expect("valid");
        prop_assert_eq!(&parsed.client_id, &client_id);
        prop_assert_eq!(&parsed.scope, &scope);
        prop_assert_eq!(parsed.introspect, introspect.unwrap_or_default());
        prop_assert_eq!(parsed.view_access_tokens, view_access_tokens.unwrap_or_default());
        prop_assert_eq!(&parsed.allowed_ips, &allowed_ips.clone().unwrap_or_default());

        let mut change = Map::new();
        put(&mut change, "scope", scope.clone().map(Some));
        put(&mut change, "introspect", introspect.map(Some));
        put(&mut change, "view_access_tokens", view_access_tokens.map(Some));
        put(&mut change, "allowed_ips", allowed_ips.clone().map(Some));
        put(&mut change, "disabled", disabled.map(Some));
        let parsed: ChangeClientBody = parse(&json_headers(), &body(change)).expect("valid");
        prop_assert_eq!(parsed.scope, scope);
        prop_assert_eq!(parsed.introspect, introspect);
        prop_assert_eq!(parsed.view_access_tokens, view_access_tokens);
        prop_assert_eq!(parsed.allowed_ips, allowed_ips);
        prop_assert_eq!(parsed.disabled, disabled);
    }
}
