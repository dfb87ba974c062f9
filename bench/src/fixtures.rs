//! Realistic data: users, their tokens (issued through the repository's
//! writer), sessions and JWTs with the same contents.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use token_repository::{Grant, Holder, Minted, RedisStore, Scopes, TokenWriter as _};
use tower_sessions::SessionStore as _;
use tower_sessions::session::{Id, Record};

use crate::apps::{Claims, JWT_AUDIENCE, JWT_ISSUER, RESOURCE, SESSION_USER_KEY, SessionUser};

/// The audience of fixture tokens: [`RESOURCE`], which the opaque services
/// check.
fn audience() -> token_repository::Audience {
    token_repository::ResourceUri::parse(RESOURCE)
        .ok()
        .and_then(|uri| token_repository::Audience::of([uri.tag()]).ok())
        .unwrap_or_default()
}

/// Access token lifetime (the authority's default).
pub(crate) const ACCESS_TTL: Duration = Duration::from_secs(900);
/// Refresh token lifetime (the authority's default: 14 days).
pub(crate) const REFRESH_TTL: Duration = Duration::from_secs(1_209_600);

/// One user, with realistic record contents.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) subject: String,
    pub(crate) username: String,
    pub(crate) name: String,
    pub(crate) email: String,
}

impl Person {
    /// User number `index`: a UUID subject, a username, a display name and
    /// an email address of everyday lengths.
    pub(crate) fn new(index: usize) -> Self {
        Self {
            subject: uuid::Uuid::new_v4().to_string(),
            username: format!("user{index:06}"),
            name: format!("Firstname Lastname {index}"),
            email: format!("user{index:06}@example.com"),
        }
    }

    /// An access + refresh grant for this user: scopes `read write`, client
    /// `web`, audience [`RESOURCE`], the authority's default lifetimes.
    pub(crate) fn grant(&self) -> Grant {
        Grant {
            holder: Holder {
                subject: self.subject.clone(),
                username: self.username.clone(),
                name: Some(self.name.clone()),
                email: Some(self.email.clone()),
                scopes: Scopes::parse("read write").unwrap_or_else(|_| Scopes::empty()),
                client_id: Some("web".into()),
            },
            access_ttl: ACCESS_TTL,
            refresh_ttl: Some(REFRESH_TTL),
            audience: audience(),
        }
    }
}

/// Issues `per_user` token pairs for each of `users` through `store`
/// (`concurrency` issues in flight); answers the minted tokens.
pub(crate) async fn issue(
    store: &RedisStore,
    users: &[Person],
    per_user: usize,
    concurrency: usize,
    mutate: impl Fn(&mut Grant),
) -> Result<Vec<Minted>, String> {
    let mut grants = Vec::with_capacity(users.len() * per_user);
    for _ in 0..per_user {
        for user in users {
            let mut grant = user.grant();
            mutate(&mut grant);
            grants.push(grant);
        }
    }
    let results: Vec<Result<Minted, String>> = futures_util::stream::iter(grants)
        .map(|grant| {
            let store = store.clone();
            async move {
                let minted = grant.mint().map_err(|error| error.to_string())?;
                store
                    .issue(&minted, None)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(minted)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Creates one session per user in the session store; answers the cookie
/// values (`id=<session id>`).
pub(crate) async fn sessions(
    store: &tower_sessions_redis_store::RedisStore<fred::clients::Pool>,
    users: &[Person],
) -> Result<Vec<String>, String> {
    let mut cookies = Vec::with_capacity(users.len());
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    for user in users {
        let value = serde_json::to_value(SessionUser {
            subject: user.subject.clone(),
            username: user.username.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            scope: "read write".into(),
        })
        .map_err(|error| error.to_string())?;
        let mut record = Record {
            id: Id::default(),
            data: HashMap::from([(SESSION_USER_KEY.to_owned(), value)]),
            expiry_date: expiry,
        };
        store
            .create(&mut record)
            .await
            .map_err(|error| error.to_string())?;
        cookies.push(format!("id={}", record.id));
    }
    Ok(cookies)
}

/// The Ed25519 key pair of RFC 8032's first test vector: a fixed,
/// published key is fine for a benchmark (it only has to verify).
pub(crate) const ED25519_SEED: [u8; 32] =
    hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
pub(crate) const ED25519_PUBLIC: [u8; 32] =
    hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");

const fn hex32(text: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not hex"),
        }
    }
    let bytes = text.as_bytes();
    let mut out = [0_u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// The PKCS#8 v1 form of an Ed25519 seed (RFC 8410), what
/// `EncodingKey::from_ed_der` takes.
pub(crate) fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// One JWT per user with the claims our token record holds, signed with
/// `key`.
pub(crate) fn jwts(
    users: &[Person],
    algorithm: Algorithm,
    key: &EncodingKey,
) -> Result<Vec<String>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    users
        .iter()
        .map(|user| {
            let claims = Claims {
                iss: JWT_ISSUER.into(),
                aud: JWT_AUDIENCE.into(),
                sub: user.subject.clone(),
                exp: now + ACCESS_TTL.as_secs(),
                iat: now,
                jti: uuid::Uuid::new_v4().to_string(),
                scope: "read write".into(),
                client_id: "web".into(),
                username: user.username.clone(),
                name: user.name.clone(),
                email: user.email.clone(),
            };
            jsonwebtoken::encode(&Header::new(algorithm), &claims, key)
                .map_err(|error| error.to_string())
        })
        .collect()
}
