//! [`Values`]: the values given (environment, file), read through the
//! settings that declare them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::setting::alternatives;
use crate::{ConfigError, Fallback, Kind, Setting};

/// The values given, `NAME → text`; an empty text counts as not given.
/// Every reader takes the [`Setting`], so the default and the bounds come
/// from its declaration.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    given: &'a BTreeMap<String, String>,
}

impl<'a> Values<'a> {
    /// The values of `given`.
    #[must_use]
    pub fn new(given: &'a BTreeMap<String, String>) -> Self {
        Self { given }
    }

    /// The value given for `name`, if any and not empty.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.given
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The value given for `setting`, or its default when it has a value.
    #[must_use]
    pub fn text(&self, setting: &Setting) -> Option<&'a str> {
        self.get(setting.name).or(match setting.kind {
            Kind::Text {
                default: Fallback::Value(default),
            }
            | Kind::Choice { default, .. } => Some(default),
            _ => None,
        })
    }

    /// [`Self::text`] turned into a `T` by `parse`; its message, with the
    /// text appended, names the setting when it fails.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting; `required` when it is neither
    /// given nor has a default.
    pub fn parse<T>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.parse_optional(setting, parse)?
            .ok_or_else(|| ConfigError::new(setting.name, "required"))
    }

    /// [`Self::parse`] for a setting that may be absent: `None` when it is
    /// neither given nor has a default.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting.
    pub fn parse_optional<T>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.text(setting)
            .map(|text| {
                parse(text).map_err(|problem| {
                    ConfigError::new(setting.name, format!("{problem} (got {text:?})"))
                })
            })
            .transpose()
    }

    /// A whole number within the setting's bounds, or its default.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting: not a number, out of bounds, or
    /// (a mistake in the table) a number setting without a value default.
    pub fn number<T: TryFrom<u64>>(&self, setting: &Setting) -> Result<T, ConfigError> {
        self.number_or(setting, None)
    }

    /// [`Self::number`] for a setting with a computed default: `computed`
    /// when not given.
    ///
    /// # Errors
    ///
    /// As [`Self::number`].
    pub fn number_computed<T: TryFrom<u64>>(
        &self,
        setting: &Setting,
        computed: u64,
    ) -> Result<T, ConfigError> {
        self.number_or(setting, Some(computed))
    }

    fn number_or<T: TryFrom<u64>>(
        &self,
        setting: &Setting,
        computed: Option<u64>,
    ) -> Result<T, ConfigError> {
        let Kind::Number { default, min, max } = setting.kind else {
            return Err(ConfigError::new(setting.name, "not a number setting"));
        };
        let out_of_bounds = |text: &str| {
            ConfigError::new(
                setting.name,
                format!("expected a whole number from {min} to {max} (got {text:?})"),
            )
        };
        let number = match (self.get(setting.name), default, computed) {
            (Some(text), _, _) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| out_of_bounds(text))?,
            (None, Fallback::Value(n), _) | (None, _, Some(n)) => n,
            (None, _, None) => return Err(ConfigError::new(setting.name, "required")),
        };
        T::try_from(number).map_err(|_| out_of_bounds(&number.to_string()))
    }

    /// A number of seconds within the setting's bounds, or its default.
    ///
    /// # Errors
    ///
    /// As [`Self::number`].
    pub fn seconds(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.number(setting).map(Duration::from_secs)
    }

    /// A number of milliseconds within the setting's bounds, or its
    /// default.
    ///
    /// # Errors
    ///
    /// As [`Self::number`].
    pub fn millis(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.number(setting).map(Duration::from_millis)
    }

    /// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case),
    /// or the default.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting.
    pub fn flag(&self, setting: &Setting) -> Result<bool, ConfigError> {
        let Kind::Flag { default } = setting.kind else {
            return Err(ConfigError::new(setting.name, "not a flag setting"));
        };
        match self
            .get(setting.name)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(
                setting.name,
                format!("expected true or false (got {other:?})"),
            )),
        }
    }

    /// One of the setting's choices, or its default.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting and the choices.
    pub fn choice(&self, setting: &Setting) -> Result<&'a str, ConfigError> {
        let Kind::Choice { default, choices } = setting.kind else {
            return Err(ConfigError::new(setting.name, "not a choice setting"));
        };
        match self.get(setting.name) {
            None => Ok(default),
            Some(value) if choices.contains(&value) => Ok(value),
            Some(_) => Err(ConfigError::new(
                setting.name,
                format!("expected {}", alternatives(choices, "`")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNT: Setting = Setting::number("COUNT", 16, 1..=1024, "a count");
    const SMALL: Setting = Setting::number("SMALL", 64, 1..=128, "fits a u8");
    const CPUS: Setting = Setting::number_computed("CPUS", "CPU count", 1..=1024, "workers");
    const ON: Setting = Setting::flag("ON", false, "a flag");
    const FORMAT: Setting = Setting::choice("FORMAT", "text", &["text", "json"], "a choice");
    const URL: Setting = Setting::text("URL", "redis://127.0.0.1:6379", "a URL");
    const ISSUER: Setting = Setting::optional("ISSUER", "a URL");

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Nothing given: every reader answers the declared default; an empty
    /// value counts as not given.
    #[test]
    fn defaults() {
        let map = given(&[("COUNT", "")]);
        let values = Values::new(&map);
        assert_eq!(values.number::<usize>(&COUNT), Ok(16));
        assert_eq!(values.number_computed::<usize>(&CPUS, 4), Ok(4));
        assert_eq!(values.flag(&ON), Ok(false));
        assert_eq!(values.choice(&FORMAT), Ok("text"));
        assert_eq!(values.text(&URL), Some("redis://127.0.0.1:6379"));
        assert_eq!(values.text(&ISSUER), None);
        assert_eq!(values.seconds(&COUNT), Ok(Duration::from_secs(16)));
        assert_eq!(values.millis(&COUNT), Ok(Duration::from_millis(16)));
    }

    /// Values outside the bounds, of the wrong form or not among the
    /// choices are refused, naming the setting and what it takes.
    #[test]
    fn refusals() {
        let map = given(&[
            ("COUNT", "0"),
            ("SMALL", "300"),
            ("ON", "maybe"),
            ("FORMAT", "xml"),
            ("URL", "x"),
        ]);
        let values = Values::new(&map);
        let error = values.number::<usize>(&COUNT).unwrap_err();
        assert_eq!(error.variable, "COUNT");
        assert_eq!(
            error.problem,
            "expected a whole number from 1 to 1024 (got \"0\")"
        );
        assert_eq!(
            values.number::<u8>(&SMALL).unwrap_err().problem,
            "expected a whole number from 1 to 128 (got \"300\")"
        );
        assert_eq!(
            values.flag(&ON).unwrap_err().problem,
            "expected true or false (got \"maybe\")"
        );
        assert_eq!(
            values.choice(&FORMAT).unwrap_err().problem,
            "expected `text` or `json`"
        );
        let error = values
            .parse(&URL, |_| Err::<(), _>("expected a URL".to_owned()))
            .unwrap_err();
        assert_eq!(
            Values::new(&BTreeMap::new())
                .parse(&ISSUER, |text| Ok(text.len()))
                .unwrap_err()
                .problem,
            "required"
        );
        assert_eq!(error.to_string(), "URL: expected a URL (got \"x\")");
    }

    /// Given values are read, trimmed for numbers, in any case for flags.
    #[test]
    fn given_values() {
        let map = given(&[("COUNT", " 32 "), ("ON", "YES"), ("FORMAT", "json")]);
        let values = Values::new(&map);
        assert_eq!(values.number::<u32>(&COUNT), Ok(32));
        assert_eq!(values.flag(&ON), Ok(true));
        assert_eq!(values.choice(&FORMAT), Ok("json"));
        assert_eq!(
            values
                .parse_optional(&SMALL, |text| Ok(text.len()))
                .expect("valid"),
            None,
            "a number setting has no text default"
        );
    }
}
