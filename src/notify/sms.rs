//! SMS text: one segment.
//!
//! A single SMS carries 160 GSM-7 septets, or 70 UCS-2 code units once any
//! character falls outside GSM-7 (an emoji counts twice: it is a surrogate
//! pair). GSM-7's extension characters (`{ } [ ] ~ \ | ^ €` and form feed)
//! take two septets. [`one_segment`] first replaces common typographic
//! characters by GSM look-alikes (curly quotes, dashes, `…`), so a summary
//! with a `—` is not cut to 70, then shortens with an ellipsis.

/// The GSM 03.38 basic character set (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table (an escape plus one septet).
const GSM_EXT: &str = "\x0c^{}\\[~]|€";

pub const GSM7_SEGMENT: usize = 160;
pub const UCS2_SEGMENT: usize = 70;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

fn gsm_width(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXT.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding a phone would pick for `s`.
pub fn encoding(s: &str) -> Encoding {
    if s.chars().all(|c| gsm_width(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

fn width(c: char, enc: Encoding) -> usize {
    match enc {
        Encoding::Gsm7 => gsm_width(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// Septets (GSM-7) or UTF-16 code units (UCS-2) of `s`.
pub fn units(s: &str) -> (Encoding, usize) {
    let enc = encoding(s);
    (enc, s.chars().map(|c| width(c, enc)).sum())
}

/// How many units fit in one segment.
pub fn segment_limit(enc: Encoding) -> usize {
    match enc {
        Encoding::Gsm7 => GSM7_SEGMENT,
        Encoding::Ucs2 => UCS2_SEGMENT,
    }
}

/// Typographic characters → GSM-7 look-alikes.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '‘' | '’' | '‚' | '′' | '`' => out.push('\''),
            '“' | '”' | '„' | '″' => out.push('"'),
            '–' | '—' | '−' | '‐' => out.push('-'),
            '…' => out.push_str("..."),
            '\u{a0}' | '\t' => out.push(' '),
            '×' => out.push('x'),
            _ => out.push(c),
        }
    }
    out
}

/// `s` as one SMS segment: look-alikes first, then cut with an ellipsis
/// (`...` in GSM-7, `…` in UCS-2).
pub fn one_segment(s: &str) -> String {
    let s = plain(s.trim());
    let (enc, n) = units(&s);
    let limit = segment_limit(enc);
    if n <= limit {
        return s;
    }
    let ellipsis = match enc {
        Encoding::Gsm7 => "...",
        Encoding::Ucs2 => "…",
    };
    let budget = limit - ellipsis.chars().map(|c| width(c, enc)).sum::<usize>();
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        let w = width(c, enc);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(c);
    }
    let out = out.trim_end();
    format!("{out}{ellipsis}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gsm_ucs2_and_extension_characters() {
        assert_eq!(units("CPU 97% on i-0abc"), (Encoding::Gsm7, 17));
        assert_eq!(
            units("a{b}"),
            (Encoding::Gsm7, 6),
            "braces take two septets"
        );
        assert_eq!(units("€5"), (Encoding::Gsm7, 3));
        assert_eq!(units("Zürich ok"), (Encoding::Gsm7, 9), "ü is GSM-7");
        assert_eq!(units("Łódź"), (Encoding::Ucs2, 4));
        assert_eq!(
            units("fire 🔥"),
            (Encoding::Ucs2, 7),
            "an emoji is a surrogate pair"
        );
    }

    #[test]
    fn shortens_to_one_segment() {
        let long = "x".repeat(200);
        let s = one_segment(&long);
        assert_eq!(units(&s), (Encoding::Gsm7, 160));
        assert!(s.ends_with("..."));

        let braces = "{}".repeat(100);
        let s = one_segment(&braces);
        assert!(units(&s).1 <= 160, "{}", units(&s).1);

        let polish = "Łódź ".repeat(30);
        let s = one_segment(&polish);
        let (enc, n) = units(&s);
        assert_eq!(enc, Encoding::Ucs2);
        assert!((68..=70).contains(&n), "{n}");
        assert!(s.ends_with('…'));

        let emoji = "🔥".repeat(50);
        let s = one_segment(&emoji);
        assert!(units(&s).1 <= 70);
        assert!(
            s.chars().all(|c| c == '🔥' || c == '…'),
            "no half surrogate"
        );

        let short = "ok";
        assert_eq!(one_segment(short), "ok");
    }

    #[test]
    fn typographic_characters_do_not_force_ucs2() {
        let s = one_segment(&format!("CPU high — “i-0abc” … {}", "y".repeat(100)));
        assert_eq!(encoding(&s), Encoding::Gsm7);
        assert!(s.starts_with("CPU high - \"i-0abc\" ..."), "{s}");
        assert_eq!(units(&s).1, 124);
    }
}
