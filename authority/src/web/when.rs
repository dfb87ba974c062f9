//! Dates on the pages, without a date crate.

use token_repository::Timestamp;

/// `timestamp` for a page: UTC, to the minute (`2026-12-02 16:50 UTC`).
pub(super) fn when(timestamp: Timestamp) -> String {
    // UTC, minutes: `2026-12-02 16:50 UTC`, without a date crate.
    let secs = timestamp.as_unix_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        (secs % 86_400) / 3600,
        (secs % 3600) / 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates render without a date crate.
    #[test]
    fn dates() {
        assert_eq!(when(Timestamp::from_unix_millis(0)), "1970-01-01 00:00 UTC");
        assert_eq!(
            when(Timestamp::from_unix_millis(1_796_230_200_000)),
            "2026-12-02 16:50 UTC"
        );
    }
}
