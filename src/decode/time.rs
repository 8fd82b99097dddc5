//! Event timestamps: RFC 3339 strings or epoch milliseconds.

use crate::model::Millis;

/// Parses an RFC 3339 timestamp (`2026-01-01T00:05:00Z`,
/// `2026-01-01T09:05:00.123+09:00`) to epoch milliseconds.
///
/// Hand-written because it runs once per event; it accepts exactly RFC 3339
/// (a `T` or space between date and time, any number of fraction digits of
/// which the first three count, `Z` or a numeric offset).
pub fn parse_rfc3339(s: &str) -> Result<Millis, &'static str> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err("timestamp is too short for RFC 3339");
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let mut n = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return Err("timestamp is not RFC 3339 (expected a digit)");
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Ok(n)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err("timestamp is not RFC 3339 (expected YYYY-MM-DDTHH:MM:SS)");
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("timestamp has an invalid date");
    }
    if hour > 23 || min > 59 || sec > 60 {
        return Err("timestamp has an invalid time of day");
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("timestamp has an empty fraction");
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return Err("timestamp needs a zone: Z or an offset like +09:00"),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec.min(59) - offset_min * 60;
    Ok(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_rfc3339_allows() {
        // (input, expected epoch ms) — cross-checked against chrono below.
        let cases = [
            "1970-01-01T00:00:00Z",
            "2026-01-01T00:05:00Z",
            "2026-01-01T09:05:00+09:00",
            "2025-12-31T19:05:00.5-05:00",
            "2024-02-29T23:59:59.999999Z",
            "2026-03-08 02:30:00.123Z",
            "1969-12-31T23:59:59Z",
        ];
        for c in cases {
            let want = chrono::DateTime::parse_from_rfc3339(c)
                .unwrap()
                .timestamp_millis();
            assert_eq!(parse_rfc3339(c), Ok(want), "{c}");
        }
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for c in [
            "2026-01-01",
            "2026-01-01T00:05:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0900",
            "yesterday at noon, UTC",
        ] {
            assert!(parse_rfc3339(c).is_err(), "{c} should be rejected");
        }
    }
}
