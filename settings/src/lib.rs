//! Settings declared once.
//!
//! A [`Setting`] names an environment variable, its default, its bounds and
//! what it means. A crate lists its settings in one table (a `const`
//! slice); parsing ([`Values`]), the `--help` text ([`Setting::help_line`])
//! and the README's configuration table ([`Setting::markdown_default`],
//! which a test compares with the README) all read that table, so a
//! default is written in one place.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use token_settings::{Setting, Values};
//!
//! const TTL: Setting = Setting::number("TTL", 900, 1..=86_400, "token lifetime, seconds");
//!
//! let mut given = BTreeMap::new();
//! assert_eq!(Values::new(&given).seconds(&TTL).unwrap(), Duration::from_secs(900));
//! given.insert("TTL".to_owned(), "0".to_owned());
//! let error = Values::new(&given).seconds(&TTL).unwrap_err();
//! assert_eq!(error.variable, "TTL");
//! assert_eq!(error.problem, "expected a whole number from 1 to 86400 (got \"0\")");
//! assert_eq!(TTL.markdown_default(), "`900`");
//! ```
//!
//! # Layout
//!
//! - [`setting`]: [`Setting`], what one setting is and how it is shown.
//! - [`values`]: [`Values`], the given values read through the settings.
//! - [`error`]: [`ConfigError`], naming the variable at fault.

pub mod error;
pub mod setting;
pub mod values;

pub use error::ConfigError;
pub use setting::{Fallback, Kind, Setting};
pub use values::Values;
