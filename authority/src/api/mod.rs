//! The authority's own JSON API: the token holder (`/v1/me`,
//! `/v1/sessions`), administration (`/v1/admin/…`, scope `admin`; the
//! provider registry in [`providers`]),
//! connected services (`/v1/connect/…`, credentials in [`credentials`]) and
//! health.

pub mod admin;
pub mod connect;
pub mod credentials;
pub mod health;
pub mod json;
pub mod me;
pub mod providers;
