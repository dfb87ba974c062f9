//! The standard OAuth 2.0 endpoints: token (RFC 6749), revocation (RFC
//! 7009), introspection (RFC 7662) and server metadata (RFC 8414).

pub mod introspect;
pub mod metadata;
pub mod revoke;
pub mod token;
