//! Time as the generator keeps it: microseconds since the Unix epoch, UTC; and the two text
//! forms Airflow puts in run ids and log lines.

/// Microseconds in a second.
pub(crate) const SECOND: i64 = 1_000_000;
/// Microseconds in a minute.
pub(crate) const MINUTE: i64 = 60 * SECOND;
/// Microseconds in an hour.
pub(crate) const HOUR: i64 = 60 * MINUTE;
/// Microseconds in a day.
pub(crate) const DAY: i64 = 24 * HOUR;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses `YYYY-MM-DD` (optionally followed by `T...`, ignored) to microseconds at midnight UTC.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let date = text.trim().get(..10)?;
    let mut parts = date.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    (civil_from_days(days) == (year, month, day)).then_some(days * DAY)
}

/// `2024-01-05T03:00:00+00:00`, with `.ffffff` when there are microseconds: Python's
/// `datetime.isoformat()` of a UTC datetime, which is what Airflow puts in run ids.
pub(crate) fn iso(micros: i64) -> String {
    let (year, month, day) = civil_from_days(micros.div_euclid(DAY));
    let of_day = micros.rem_euclid(DAY);
    let (h, m, s, us) = (
        of_day / HOUR,
        of_day / MINUTE % 60,
        of_day / SECOND % 60,
        of_day % SECOND,
    );
    if us == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}+00:00")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}+00:00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_format_like_python() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2000, 1, 1) * DAY,
            crate::catalog::PG_EPOCH_MICROS
        );
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        let t = parse_date("2024-01-05").unwrap();
        assert_eq!(iso(t), "2024-01-05T00:00:00+00:00");
        assert_eq!(iso(t + 3 * HOUR + 7), "2024-01-05T03:00:00.000007+00:00");
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("soon"), None);
    }
}
