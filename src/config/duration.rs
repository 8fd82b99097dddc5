//! Durations as written in YAML: `30s`, `5m`, `1h30m`, `250ms`, `1d`.

use crate::model::Millis;

pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let (mut total, mut rest) = (0i64, s);
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "bad duration {s:?}: expected a number like 5m, 30s or 1h"
            ));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "bad duration {s:?}: the number needs a unit (ms, s, m, h, d)"
                ))
            }
            u => {
                return Err(format!(
                    "bad duration {s:?}: unknown unit {u:?}; use ms, s, m, h or d"
                ))
            }
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(|| format!("bad duration {s:?}: too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats milliseconds the way they are written: `5m`, `1h30m`, `250ms`.
pub fn format_duration(ms: Millis) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (s, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1d", 86_400_000),
        ] {
            assert_eq!(parse_duration(s), Ok(ms), "{s}");
            assert_eq!(format_duration(ms), s);
        }
        for bad in ["", "5", "m", "5x", "-5m", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
