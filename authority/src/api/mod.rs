//! The authority's own JSON API: the token holder (`/v1/me`,
//! `/v1/sessions`), administration (`/v1/admin/…`, scope `admin`) and
//! health.

pub mod admin;
pub mod health;
pub mod json;
pub mod me;
