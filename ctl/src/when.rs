//! `<time>` arguments: RFC 3339 (`2026-11-21T10:00:00Z`, `...+08:00`) or `+<duration>`
//! (`+10m`, `+1h30m`, `+90s`, `+500ms`, `+2d`), as milliseconds since the Unix epoch.
//! A date that does not exist (February 30, April 31, February 29 of a common year, hour 24,
//! minute 60, second 60) is refused, never carried over into the next month or day.

use dynpage_core::layout::MAX_VERSION;

/// A `<time>` as a production version: milliseconds since the epoch, at most
/// [`MAX_VERSION`] (the last millisecond of 9999).
pub fn parse_time(s: &str, now_ms: u64) -> Result<u64, String> {
    let ms = match s.strip_prefix('+') {
        Some(d) => {
            let d = parse_duration(d)?;
            now_ms
                .checked_add(d)
                .filter(|&t| t <= MAX_VERSION)
                .ok_or_else(|| {
                    format!("invalid time \"{s}\": it ends after 9999-12-31T23:59:59.999Z")
                })?
        }
        None => parse_rfc3339(s)?,
    };
    if ms > MAX_VERSION {
        return Err(format!(
            "invalid time \"{s}\": it is after 9999-12-31T23:59:59.999Z"
        ));
    }
    Ok(ms)
}

pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration \"{s}\" (examples: 10m, 1h30m, 90s, 500ms)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Days in month `m` (1-12) of year `y`.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid time \"{s}\" (use RFC 3339 like 2026-11-21T10:00:00Z, or +10m)");
    let impossible = |why: String| format!("invalid time \"{s}\": {why}");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) {
        return Err(impossible(format!("there is no month {mo}")));
    }
    let month_days = days_in_month(y, mo);
    if !(1..=month_days).contains(&d) {
        let month = MONTHS[(mo - 1) as usize];
        return Err(impossible(if d == 0 {
            "there is no day 0".to_string()
        } else {
            format!("{month} {y} has {month_days} days")
        }));
    }
    if h > 23 {
        return Err(impossible(format!("there is no hour {h} (00-23)")));
    }
    if mi > 59 {
        return Err(impossible(format!("there is no minute {mi} (00-59)")));
    }
    if sec > 59 {
        return Err(impossible(format!(
            "there is no second {sec} (00-59; leap seconds are not versions)"
        )));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return Err(bad());
        }
        let frac = &s[start..end.min(start + 3)];
        millis = frac.parse::<i64>().map_err(|_| bad())? * 10i64.pow(3 - frac.len() as u32);
        i = end;
    }
    let offset_min = match s.get(i..) {
        Some("Z") | Some("z") => 0,
        Some(tz)
            if tz.len() == 6
                && (tz.starts_with('+') || tz.starts_with('-'))
                && &tz[3..4] == ":" =>
        {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return Err(impossible(format!("there is no offset {tz}")));
            }
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + millis)
        .map_err(|_| impossible("it is before 1970-01-01T00:00:00Z".to_string()))
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_rfc3339("2026-11-21T10:00:00Z"), Ok(1_795_255_200_000));
        assert_eq!(
            parse_rfc3339("2026-11-21T18:00:00+08:00"),
            Ok(1_795_255_200_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T10:00:00.5Z"),
            Ok(1_795_255_200_500)
        );
        for bad in [
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "2026-11-21T10:00:00",
            "x",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn impossible_dates_are_refused_not_carried_over() {
        // D11: 2026-02-30 was stored as 2026-03-02.
        for (bad, why) in [
            ("2026-02-30T00:00:00Z", "February 2026 has 28 days"),
            ("2026-02-29T00:00:00Z", "February 2026 has 28 days"),
            ("2100-02-29T00:00:00Z", "February 2100 has 28 days"),
            ("2026-04-31T00:00:00Z", "April 2026 has 30 days"),
            ("2026-06-31T12:00:00+08:00", "June 2026 has 30 days"),
            ("2026-11-00T00:00:00Z", "there is no day 0"),
            ("2026-01-32T00:00:00Z", "January 2026 has 31 days"),
            ("2026-00-10T00:00:00Z", "there is no month 0"),
            ("2026-13-10T00:00:00Z", "there is no month 13"),
            ("2026-11-21T24:00:00Z", "there is no hour 24"),
            ("2026-11-21T10:60:00Z", "there is no minute 60"),
            ("2026-11-21T10:00:60Z", "there is no second 60"),
            ("2026-11-21T10:00:00+24:00", "there is no offset +24:00"),
            ("2026-11-21T10:00:00+08:60", "there is no offset +08:60"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("9999-12-31T23:59:59-01:00", "after 9999-12-31"),
        ] {
            let e = parse_time(bad, 0).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(&format!("invalid time \"{bad}\"")), "{e}");
        }
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert_eq!(
            parse_rfc3339("2026-04-30T23:59:59.999Z"),
            Ok(1_777_593_599_999)
        );
        assert_eq!(parse_time("9999-12-31T23:59:59.999Z", 0), Ok(MAX_VERSION));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", 0), Ok(0));
    }

    #[test]
    fn relative_times_stay_in_range() {
        assert!(parse_time("+1d", MAX_VERSION).is_err());
        assert!(parse_time(&format!("+{}ms", u64::MAX), 1).is_err());
        assert_eq!(parse_time("+1ms", MAX_VERSION - 1), Ok(MAX_VERSION));
    }

    #[test]
    fn durations_and_relative_times() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(parse_time("+10s", 1000), Ok(11_000));
    }

    #[test]
    fn format_round_trips() {
        let t = 1_795_255_200_123;
        assert_eq!(format_ms(t), "2026-11-21T10:00:00.123Z");
        assert_eq!(parse_rfc3339(&format_ms(t)), Ok(t));
    }
}
