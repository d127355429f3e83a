//! The simulator's clock. Odoo stores datetimes in UTC as `YYYY-MM-DD HH:MM:SS` (1-second
//! resolution, docs/odoo.md#counts). Tests that query "moves after T" need the clock under
//! control, so it can be frozen and moved by hand instead of slept on.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall time or a hand-driven time, plus an offset.
#[derive(Debug, Default)]
pub struct Clock {
    /// Seconds since the epoch when frozen; `None` follows the system clock.
    frozen: Mutex<Option<i64>>,
    /// Seconds added to the system clock when not frozen: a server whose clock is off.
    offset: std::sync::atomic::AtomicI64,
}

impl Clock {
    /// Seconds since the Unix epoch, now.
    pub fn now(&self) -> i64 {
        match *self.frozen.lock().expect("clock lock") {
            Some(seconds) => seconds,
            None => {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
                    + self.offset.load(std::sync::atomic::Ordering::Relaxed)
            }
        }
    }

    /// Runs the clock `seconds` ahead of the system's (behind when negative).
    pub fn set_offset(&self, seconds: i64) {
        self.offset
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// Freezes the clock at `seconds` since the epoch.
    pub fn set(&self, seconds: i64) {
        *self.frozen.lock().expect("clock lock") = Some(seconds);
    }

    /// Moves the clock forward (freezing it at the current time first).
    pub fn advance(&self, by: Duration) {
        let now = self.now();
        self.set(now + by.as_secs() as i64);
    }
}

/// An HTTP `Date` header value (`Sun, 06 Nov 1994 08:49:37 GMT`) for `seconds`.
pub fn format_http_date(seconds: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = format_datetime(seconds); // YYYY-MM-DD HH:MM:SS
    let (year, month, day) = (&text[0..4], &text[5..7], &text[8..10]);
    let month: usize = month.parse().unwrap_or(1);
    let weekday = DAYS[seconds.div_euclid(86_400).rem_euclid(7) as usize];
    format!(
        "{weekday}, {day} {} {year} {} GMT",
        MONTHS[month - 1],
        &text[11..19]
    )
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since the epoch.
pub fn format_datetime(seconds: i64) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `YYYY-MM-DD` for seconds since the epoch.
pub fn format_date(seconds: i64) -> String {
    format_datetime(seconds)[..10].to_owned()
}

/// The last day of the year of `seconds`, Odoo's default annual inventory date.
pub fn year_end(seconds: i64) -> String {
    let (year, _, _) = civil_from_days(seconds.div_euclid(86_400));
    format!("{year:04}-12-31")
}

/// Parses `YYYY-MM-DD[ HH:MM[:SS]]` (UTC) into seconds since the epoch.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T']).unwrap_or((text, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse::<i64>());
    let hour = t.next().and_then(Result::ok).unwrap_or(0);
    let minute = t.next().and_then(Result::ok).unwrap_or(0);
    let second = t.next().and_then(Result::ok).unwrap_or(0);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip() {
        let t = parse_datetime("2026-11-29 08:49:52").unwrap();
        assert_eq!(format_datetime(t), "2026-11-29 08:49:52");
        assert_eq!(format_date(t), "2026-11-29");
        assert_eq!(year_end(t), "2026-12-31");
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(
            parse_datetime("2000-02-29").map(format_date).unwrap(),
            "2000-02-29"
        );
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn a_frozen_clock_moves_only_when_told() {
        let clock = Clock::default();
        clock.set(1000);
        assert_eq!(clock.now(), 1000);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), 1005);
    }
}
