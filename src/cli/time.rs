//! Times as users type them: `2024-03-01`, `2024-03-01T12:00:00Z`, or an age such as `14d`.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Parses an absolute time (RFC 3339, or a date meaning its midnight UTC) or an age before
/// `now` (`30m`, `12h`, `14d`, `2w`).
///
/// # Errors
/// A message saying which forms are accepted.
pub(crate) fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let amount: i64 = number.parse().map_err(|_| usage(text))?;
    let age = match unit {
        "m" => Duration::minutes(amount),
        "h" => Duration::hours(amount),
        "d" => Duration::days(amount),
        "w" => Duration::weeks(amount),
        _ => return Err(usage(text)),
    };
    Ok(now - age)
}

fn usage(text: &str) -> String {
    format!(
        "{text:?} is not a time: use 2024-03-01, 2024-03-01T12:00:00Z, or an age like 14d, 12h, 30m"
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn absolute_and_relative_times() {
        let now = Utc.with_ymd_and_hms(2024, 3, 15, 12, 0, 0).unwrap();
        assert_eq!(
            parse_time("2024-03-01", now).unwrap(),
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2024-03-01T02:00:00+02:00", now).unwrap(),
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("14d", now).unwrap(),
            Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("12h", now).unwrap(),
            Utc.with_ymd_and_hms(2024, 3, 15, 0, 0, 0).unwrap()
        );
        assert!(parse_time("yesterday", now).unwrap_err().contains("14d"));
        assert!(parse_time("3y", now).is_err());
    }
}
