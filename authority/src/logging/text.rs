//! The text log line, written directly.
//!
//! The output is tracing-subscriber's default "full" line without colours,
//! byte for byte (`text_lines_match_the_stock_formatter` holds them side by
//! side): `2026-12-05T23:42:57.283970Z  INFO request{path="/oauth/token"}:
//! token_authority::server: request status=200`. The stock formatter
//! styles every part — the span names, the braces, the colons, each field
//! name and each `=` — through `nu-ansi-term` even when colours are off,
//! and formats the timestamp field by field; at `RUST_LOG=info` that was
//! a fifth of a refresh rotation's instructions (bench/README.md, "The
//! log line written directly"). Here the plain parts are written as they
//! are, the date and time of day once per second, and only what needs it —
//! messages (control characters escaped), errors, `r#` and `log.` fields,
//! strings that `{:?}` would escape — goes through the stock code.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime as _;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The line: timestamp, level, the spans from the root with their fields,
/// the target, the event's fields.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events from the `log` crate carry their own target.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write_now(&mut writer)?;
        writer.write_char(' ')?;
        writer.write_str(level(*meta.level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                seen = true;
                writer.write_str(span.metadata().name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The level, five characters wide.
fn level(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        _ => "ERROR",
    }
}

thread_local! {
    /// The second last written on this thread and its
    /// `YYYY-MM-DDTHH:MM:SS` (UTC).
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Writes the current time as RFC 3339 UTC with microseconds.
fn write_now(writer: &mut Writer<'_>) -> fmt::Result {
    let Ok(since_epoch) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        // A clock before 1970: the stock formatter handles it.
        return tracing_subscriber::fmt::time::SystemTime.format_time(writer);
    };
    let second = since_epoch.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != second {
        text = date_time(second);
        SECOND.set((second, text));
    }
    // Nineteen ASCII digits and separators.
    writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
    let mut digits = *b".000000Z";
    put_digits(&mut digits[1..7], u64::from(since_epoch.subsec_micros()));
    writer.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` of `second` seconds after the Unix epoch (UTC),
/// for years up to 9999 (`civil_from_days`, Howard Hinnant's algorithm).
fn date_time(second: u64) -> [u8; 19] {
    let days = second / 86_400;
    let of_day = second % 86_400;
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], of_day / 3_600);
    put_digits(&mut text[14..16], of_day % 3_600 / 60);
    put_digits(&mut text[17..19], of_day % 60);
    text
}

/// Writes the last `out.len()` decimal digits of `value` into `out`,
/// zero-padded.
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        // `value % 10` is a single digit.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The fields of events and spans: `name=value` separated by spaces, the
/// message first and bare.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TextFields;

impl<'a> MakeVisitor<Writer<'a>> for TextFields {
    type Visitor = TextVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> TextVisitor<'a> {
        TextVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// See [`TextFields`].
#[derive(Debug)]
pub(super) struct TextVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    /// Written here: a plain `name=` then the value.
    fn plain(name: &str) -> bool {
        name != "message" && !name.starts_with("r#") && !name.starts_with("log.")
    }

    fn write_name(&mut self, name: &str) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(name)?;
        self.writer.write_char('=')
    }

    /// Everything else, exactly as the stock formatter writes it.
    fn stock(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut stock = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut stock);
        self.result = stock.finish();
        // `log.` fields are metadata the line already shows: not written.
        if !field.name().starts_with("log.") {
            self.is_empty = false;
        }
    }
}

/// Whether `{:?}` writes `value` between quotes unchanged.
fn quotes_unchanged(value: &str) -> bool {
    value
        .bytes()
        .all(|byte| matches!(byte, b' '..=b'~') && byte != b'"' && byte != b'\\')
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if Self::plain(field.name()) && quotes_unchanged(value) {
            self.result = self.write_name(field.name()).and_then(|()| {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            });
        } else {
            self.stock(field, |stock| stock.record_str(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.stock(field, |stock| stock.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if Self::plain(field.name()) {
            self.result = self
                .write_name(field.name())
                .and_then(|()| write!(self.writer, "{value:?}"));
        } else {
            self.stock(field, |stock| stock.record_debug(field, value));
        }
    }
}

impl VisitOutput<fmt::Result> for TextVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for TextVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::test_support::Captured;

    #[derive(Debug)]
    struct Failure(&'static str, Option<Box<Failure>>);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Failure {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|source| source as &(dyn Error + 'static))
        }
    }

    /// Every kind of field, value and span the formatter may meet.
    fn log_everything() {
        let request = tracing::info_span!(
            "request",
            method = %"POST",
            path = "/oauth/token",
            request_id = "6fa14a30-bf03-4fb6-aebc-eafd0857e866",
        );
        let _request = request.enter();
        tracing::info!(
            grant = "refresh_token",
            subject = %uuid::Uuid::nil(),
            client_id = "-",
            "tokens issued"
        );
        tracing::info!(status = 200_u16, elapsed_ms = 16.444_846_f64, "request");
        let empty = tracing::debug_span!("empty");
        let _empty = empty.enter();
        let later = tracing::warn_span!("later", r#type = "x", filled = tracing::field::Empty);
        let _later = later.enter();
        later.record("filled", "now");
        later.record("filled", 3_i64);
        tracing::warn!(
            quoted = "say \"hi\" it's",
            backslash = "C:\\path",
            unicode = "é → ✓",
            control = "\u{1b}[31mred\u{1b}[0m\ttab\nline",
            c1 = "\u{9b}31m",
            empty = "",
            small = 0.000_012_f64,
            big = 1e17_f64,
            negative = -5_i64,
            wide = u128::MAX,
            yes = true,
            list = ?vec![1, 2],
            shown = %"shown as is: \"\u{1b}\"",
            r#type = "raw",
            "message with {} and {:?}",
            "\u{1b}[0m escape",
            "debug \u{9b}"
        );
        let failure = Failure("outer", Some(Box::new(Failure("inner \u{1b}", None))));
        tracing::error!(error = &failure as &(dyn Error + 'static), "failed");
        let lonely = Failure("alone", None);
        tracing::error!(error = &lonely as &(dyn Error + 'static));
        tracing::trace!(target: "custom::target", only = 1_u8);
        tracing::debug!("");
        drop(_later);
        drop(_empty);
        tracing::info!(log.target = "looks::like::log", "a field named log.target");
        // From the `log` crate: the line shows the record's own target.
        tracing_log::format_trace(
            &log::Record::builder()
                .args(format_args!("from log {}", 1))
                .level(log::Level::Warn)
                .target("some::crate")
                .module_path_static(Some("some::crate"))
                .file_static(Some("some/crate.rs"))
                .line(Some(7))
                .build(),
        )
        .expect("dispatched");
    }

    fn stock_lines() -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        out.text()
    }

    fn our_lines() -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .fmt_fields(TextFields)
            .event_format(TextLine)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        out.text()
    }

    /// The timestamp's width: `2026-12-05T23:42:57.283970Z`.
    const STAMP: usize = 27;

    #[test]
    fn text_lines_match_the_stock_formatter() {
        let stock = stock_lines();
        let ours = our_lines();
        let stock_lines: Vec<&str> = stock.lines().collect();
        let our_lines: Vec<&str> = ours.lines().collect();
        assert_eq!(stock_lines.len(), 9, "{stock}");
        assert_eq!(our_lines.len(), stock_lines.len(), "{ours}");
        for (stock, ours) in stock_lines.iter().zip(&our_lines) {
            assert_eq!(
                ours[STAMP..],
                stock[STAMP..],
                "\nstock: {stock}\nours:  {ours}"
            );
            assert_eq!(ours.as_bytes()[STAMP], b' ');
            // The same instant to the second, in the same shape (the stock
            // line was written moments before).
            assert_eq!(ours.len() - ours[STAMP..].len(), STAMP);
            assert_eq!(ours.as_bytes()[STAMP - 1], b'Z');
        }
        assert!(
            stock.contains("request{method=POST path=\"/oauth/token\""),
            "the cases are the ones meant: {stock}"
        );
    }

    #[test]
    fn the_timestamp_is_the_stock_one() {
        // Both read the clock; retry until both land in one second.
        for _ in 0..100 {
            let mut stock = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut stock))
                .expect("stock");
            let mut ours = String::new();
            write_now(&mut Writer::new(&mut ours)).expect("ours");
            assert_eq!(ours.len(), STAMP, "{ours}");
            if ours[..19] == stock[..19] {
                assert!(ours[19..] >= stock[19..], "{stock} then {ours}");
                return;
            }
        }
        panic!("never in the same second");
    }

    #[test]
    fn dates_are_civil_dates() {
        for (second, expected) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_399, "2000-02-28T23:59:59"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_251_199, "2024-02-29T23:59:59"),
            (1_764_979_377, "2025-12-06T00:02:57"),
            (4_102_444_800, "2100-01-01T00:00:00"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ] {
            assert_eq!(
                std::str::from_utf8(&date_time(second)).expect("ASCII"),
                expected,
                "{second}"
            );
        }
    }
}
