//! The standard OAuth 2.0 endpoints: token (RFC 6749), revocation (RFC
//! 7009), introspection (RFC 7662) and server metadata (RFC 8414); the
//! authorization endpoint and its codes (RFC 6749 §4.1, RFC 7636); the
//! `resource` parameter (RFC 8707) of both.

pub mod authorize;
pub mod code;
pub mod consent;
pub mod grant;
pub mod introspect;
pub mod metadata;
pub mod redirect;
pub mod resource;
pub mod revoke;
pub mod token;

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderMap;

    use crate::address::ClientAddress;

    /// The endpoints' futures stay small: every layer of the tower stack
    /// and of the route tree moves its inner future, so a future that
    /// inlines a rarely taken path (the Redis read behind a cache, argon2
    /// for legacy hashes, the grants not asked for) is copied whole on
    /// every request. They were 13 KiB before the cold paths were boxed;
    /// the bound leaves room for growth, not for inlining one such path.
    #[test]
    fn endpoint_futures_stay_small() {
        const BOUND: usize = 3 * 1024;
        let redis = token_test_harness::RedisServer::start();
        let state = crate::test_support::state(&redis);
        let (headers, address) = (HeaderMap::new(), ClientAddress::Unknown);
        let sizes = [
            (
                "token",
                size_of_val(&super::token::handle(
                    state.clone(),
                    headers.clone(),
                    address,
                    Bytes::new(),
                )),
            ),
            (
                "introspect",
                size_of_val(&super::introspect::handle(
                    state.clone(),
                    headers.clone(),
                    address,
                    Bytes::new(),
                )),
            ),
            (
                "revoke",
                size_of_val(&super::revoke::handle(
                    state,
                    headers,
                    address,
                    Bytes::new(),
                )),
            ),
        ];
        for (endpoint, size) in sizes {
            assert!(size < BOUND, "the {endpoint} future is {size} bytes");
        }
    }
}
