//! [`Setting`]: one environment variable, declared once.

use std::ops::RangeInclusive;

/// What a setting falls back to when it is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback<T> {
    /// This value.
    Value(T),
    /// Nothing: the setting is off, or not needed, unless it is given.
    Unset,
    /// A value worked out at start-up; the text says from what (shown in
    /// the README and `--help` as it is).
    Computed(&'static str),
}

/// What values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number from `min` to `max` (a count, or a duration in the
    /// unit its name says: `…_MS` milliseconds, otherwise seconds).
    Number {
        /// The default.
        default: Fallback<u64>,
        /// The least value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Flag {
        /// The default.
        default: bool,
    },
    /// One of a few words.
    Choice {
        /// The default (one of `choices`).
        default: &'static str,
        /// The words accepted.
        choices: &'static [&'static str],
    },
    /// Text its reader checks (a URL, an address, a path, a prefix).
    Text {
        /// The default.
        default: Fallback<&'static str>,
    },
}

/// One setting: its variable's name, the values it takes and its default,
/// and a line of help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable (the TOML key is the same in lower case).
    pub name: &'static str,
    /// The values it takes and its default.
    pub kind: Kind,
    /// What it means, one line (for `--help`; the README says more).
    pub help: &'static str,
}

impl Setting {
    /// A whole number in `range`, `default` when not given.
    #[must_use]
    pub const fn number(
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
        help: &'static str,
    ) -> Self {
        Self::bounded(name, Fallback::Value(default), range, help)
    }

    /// A whole number in `range` whose default is worked out at start-up
    /// (`shown` says from what).
    #[must_use]
    pub const fn number_computed(
        name: &'static str,
        shown: &'static str,
        range: RangeInclusive<u64>,
        help: &'static str,
    ) -> Self {
        Self::bounded(name, Fallback::Computed(shown), range, help)
    }

    const fn bounded(
        name: &'static str,
        default: Fallback<u64>,
        range: RangeInclusive<u64>,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: Kind::Number {
                default,
                min: *range.start(),
                max: *range.end(),
            },
            help,
        }
    }

    /// `true` or `false`, `default` when not given.
    #[must_use]
    pub const fn flag(name: &'static str, default: bool, help: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Flag { default },
            help,
        }
    }

    /// One of `choices`, `default` when not given.
    #[must_use]
    pub const fn choice(
        name: &'static str,
        default: &'static str,
        choices: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: Kind::Choice { default, choices },
            help,
        }
    }

    /// Text, `default` when not given.
    #[must_use]
    pub const fn text(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Self::with_text(name, Fallback::Value(default), help)
    }

    /// Text with no default: off, or not needed, unless given.
    #[must_use]
    pub const fn optional(name: &'static str, help: &'static str) -> Self {
        Self::with_text(name, Fallback::Unset, help)
    }

    /// Text whose default is worked out at start-up (`shown` says from
    /// what).
    #[must_use]
    pub const fn text_computed(
        name: &'static str,
        shown: &'static str,
        help: &'static str,
    ) -> Self {
        Self::with_text(name, Fallback::Computed(shown), help)
    }

    const fn with_text(
        name: &'static str,
        default: Fallback<&'static str>,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: Kind::Text { default },
            help,
        }
    }

    /// The default as text (`None`: no default, or a computed one).
    #[must_use]
    pub fn default_value(&self) -> Option<String> {
        match self.kind {
            Kind::Number {
                default: Fallback::Value(n),
                ..
            } => Some(n.to_string()),
            Kind::Flag { default } => Some(default.to_string()),
            Kind::Choice { default, .. }
            | Kind::Text {
                default: Fallback::Value(default),
            } => Some(default.to_owned()),
            Kind::Number { .. } | Kind::Text { .. } => None,
        }
    }

    fn shown(&self, quote: fn(String) -> String) -> String {
        match (self.default_value(), self.kind) {
            (Some(value), _) => quote(value),
            (
                None,
                Kind::Number {
                    default: Fallback::Computed(shown),
                    ..
                }
                | Kind::Text {
                    default: Fallback::Computed(shown),
                },
            ) => shown.to_owned(),
            (None, _) => "—".to_owned(),
        }
    }

    /// The default as the README's configuration table shows it: a value
    /// in backticks (`` `900` ``), a computed one in words, `—` for none.
    #[must_use]
    pub fn markdown_default(&self) -> String {
        self.shown(|value| format!("`{value}`"))
    }

    /// The default as `--help` shows it: as in the README, without
    /// backticks.
    #[must_use]
    pub fn plain_default(&self) -> String {
        self.shown(|value| value)
    }

    /// The values accepted, when they are bounded: `1 to 86400`,
    /// `text or json`.
    #[must_use]
    pub fn bounds(&self) -> Option<String> {
        match self.kind {
            Kind::Number { min, max, .. } => Some(format!("{min} to {max}")),
            Kind::Choice { choices, .. } => Some(alternatives(choices, "")),
            Kind::Flag { .. } | Kind::Text { .. } => None,
        }
    }

    /// The setting's line in `--help`: name, help, default and bounds.
    #[must_use]
    pub fn help_line(&self) -> String {
        let bounds = self
            .bounds()
            .map(|bounds| format!("; {bounds}"))
            .unwrap_or_default();
        format!(
            "  {:<28} {} [default: {}{bounds}]",
            self.name,
            self.help,
            self.plain_default()
        )
    }
}

/// `a or b`, `a, b or c`, each word between `quote`s.
pub(crate) fn alternatives(words: &[&str], quote: &str) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|word| format!("{quote}{word}{quote}"))
        .collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: Setting = Setting::number("PORT", 8080, 1..=65_535, "the port");
    const WORKERS: Setting = Setting::number_computed("WORKERS", "CPU count", 1..=64, "workers");
    const FORMAT: Setting = Setting::choice("FORMAT", "text", &["text", "json"], "log format");
    const CA: Setting = Setting::text_computed("CA", "webpki roots", "a CA file");
    const SECRET: Setting = Setting::optional("SECRET", "a secret");
    const PREFIX: Setting = Setting::text("PREFIX", "ts:", "key prefix");
    const EVICT: Setting = Setting::flag("EVICT", false, "allow eviction");

    /// Defaults are shown the same way in the README and `--help`: values
    /// quoted in the README only, computed ones in words, none as `—`.
    #[test]
    fn defaults_as_shown() {
        let shown: Vec<(String, String)> = [PORT, WORKERS, FORMAT, CA, SECRET, PREFIX, EVICT]
            .iter()
            .map(|setting| (setting.markdown_default(), setting.plain_default()))
            .collect();
        let expected = [
            ("`8080`", "8080"),
            ("CPU count", "CPU count"),
            ("`text`", "text"),
            ("webpki roots", "webpki roots"),
            ("—", "—"),
            ("`ts:`", "ts:"),
            ("`false`", "false"),
        ];
        for ((markdown, plain), (want_markdown, want_plain)) in shown.iter().zip(expected) {
            assert_eq!(
                (markdown.as_str(), plain.as_str()),
                (want_markdown, want_plain)
            );
        }
    }

    /// The help line names the setting, its meaning, default and bounds.
    #[test]
    fn help_lines() {
        assert_eq!(
            PORT.help_line(),
            format!("  {:<28} the port [default: 8080; 1 to 65535]", "PORT")
        );
        assert!(
            FORMAT
                .help_line()
                .ends_with("[default: text; text or json]")
        );
        assert!(SECRET.help_line().ends_with("a secret [default: —]"));
        assert_eq!(alternatives(&["a", "b", "c"], "`"), "`a`, `b` or `c`");
        assert_eq!(alternatives(&["a"], ""), "a");
    }
}
