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
