//! A single-pass decoder for the common shape of a v1 event, tried before
//! serde_json.
//!
//! It reads one top-level object whose values are strings, numbers or
//! `null`, plus the one-level `labels`/`fields`/`attributes` objects of
//! strings, numbers and booleans, and fills the same [`Raw`] that the serde
//! path fills, so that [`Raw::validate`] decides the event (or the
//! validation error) for both paths alike.
//!
//! It is a filter, not a second parser of record: [`parse`] returns `None`
//! for anything that it is not sure serde_json would turn into exactly the
//! same `Raw`, and the caller then runs the serde path, which alone produces
//! syntax and type errors. It gives up on
//!
//! - any syntax error, trailing characters, or an input that is not UTF-8;
//! - a top-level value that is not an object (serde would accept an array);
//! - unknown or duplicate top-level keys, and keys with escapes;
//! - a value of the wrong type for its key (a number for `name`, `null`
//!   inside `labels`, a nested array or object, …);
//! - `\u` escapes of UTF-16 surrogates (other escapes are decoded);
//! - numbers that serde_json parses with anything but one exact operation:
//!   integers over 19 digits, and decimals whose digits exceed 2^53 or whose
//!   power of ten is beyond ±22 (see [`Parser::number`]);
//! - a `time` that serde would reject (out of range, fractional, not
//!   RFC 3339), so that its message comes from serde.

use std::borrow::Cow;

use super::json::{CowStr, Pairs, Raw, Time};
use super::time::parse_rfc3339;
use super::DecodeError;
use crate::model::{Attributes, Event, FieldValue, Millis};

/// Decodes `bytes` when it certainly has the v1 shape: `Some` with exactly
/// what the serde path would return (the event, or the same validation
/// error), or `None` when only the serde path can tell.
#[inline]
pub(crate) fn decode(bytes: &[u8]) -> Option<Result<Event<'_>, DecodeError>> {
    // Filled in place and validated from there: `Raw` is some 400 bytes.
    let mut raw = Raw::default();
    parse(bytes, &mut raw)?;
    Some(raw.validate())
}

/// Scans `bytes` into `raw` as serde_json would deserialize it, or `None`.
fn parse<'a>(bytes: &'a [u8], raw: &mut Raw<'a>) -> Option<()> {
    // One check of the whole message is cheaper than one per string, and
    // serde_json rejects invalid UTF-8 anywhere: outside strings every byte
    // must be ASCII JSON syntax.
    let s = std::str::from_utf8(bytes).ok()?;
    let mut p = Parser {
        s,
        b: s.as_bytes(),
        i: 0,
    };
    p.event(raw)?;
    p.ws();
    (p.i == p.b.len()).then_some(())
}

/// A number as serde_json classifies it before a visitor sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    /// A non-negative integer (`visit_u64`).
    Pos(u64),
    /// The magnitude of a negative integer: `-0` and magnitudes over 2^63
    /// become `visit_f64`, the rest `visit_i64`.
    Neg(u64),
    /// A number with a fraction or an exponent (`visit_f64`).
    Float(f64),
}

impl Num {
    /// What `f64`'s and `Scalar`'s visitors make of it.
    fn to_f64(self) -> f64 {
        match self {
            Num::Pos(n) => n as f64,
            // `(-n as i64) as f64` for the i64 cases, `-(n as f64)` for the
            // others: the same value, since rounding is symmetric.
            Num::Neg(n) => -(n as f64),
            Num::Float(f) => f,
        }
    }

    /// What `Time`'s visitor makes of it, when that is not an error.
    fn to_time(self) -> Option<Millis> {
        match self {
            Num::Pos(n) => i64::try_from(n).ok(),
            Num::Neg(0) => Some(0),
            Num::Neg(n) if n <= 1 << 63 => Some((n as i64).wrapping_neg()),
            Num::Neg(_) => None,
            Num::Float(f) => (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64),
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte from `i` that ends a plain run of string
/// bytes (`"`, `\` or a control character), or `b.len()`. Eight bytes at a
/// time: `(x - 0x01..) & !x & 0x80..` flags the zero bytes of `x`, and
/// `(w - 0x20..) & !w & 0x80..` the bytes of `w` below 0x20; a flag can be
/// wrong only above a true one (borrows run upwards), so the lowest flag of
/// the three is the first such byte.
#[inline(always)]
fn special(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let q = w ^ (ONES * u64::from(b'"'));
        let s = w ^ (ONES * u64::from(b'\\'));
        let flags = (q.wrapping_sub(ONES) & !q
            | s.wrapping_sub(ONES) & !s
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGHS;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// [`parse_rfc3339`] for the two forms klaxon's producers write,
/// `YYYY-MM-DDTHH:MM:SSZ` and `YYYY-MM-DDTHH:MM:SS.mmmZ`, without a leap
/// second; `None` for anything else, which `parse_rfc3339` then decides.
#[inline]
fn utc_millis(b: &[u8]) -> Option<Millis> {
    let d = |c: u8| -> Option<i64> {
        let v = c.wrapping_sub(b'0');
        (v <= 9).then_some(i64::from(v))
    };
    let millis = match b.len() {
        20 if b[19] == b'Z' => 0,
        24 if b[19] == b'.' && b[23] == b'Z' => d(b[20])? * 100 + d(b[21])? * 10 + d(b[22])?,
        _ => return None,
    };
    let b: &[u8; 19] = b[..19].try_into().ok()?;
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n2 = |i: usize| -> Option<i64> { Some(d(b[i])? * 10 + d(b[i + 1])?) };
    let year = n2(0)? * 100 + n2(2)?;
    let (month, day) = (n2(5)?, n2(8)?);
    let (hour, min, sec) = (n2(11)?, n2(14)?, n2(17)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil, as time.rs has it).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + hour * 3600 + min * 60 + sec) * 1000 + millis)
}

/// Powers of ten that are exact in an `f64`, as serde_json's table has them.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The largest decimal significand that converts to `f64` exactly.
const MAX_EXACT: u64 = 1 << 53;

// One bit per top-level key, to refuse duplicates as serde does.
const KIND: u32 = 1 << 0;
const TIME: u32 = 1 << 1;
const NAME: u32 = 1 << 2;
const VALUE: u32 = 1 << 3;
const NAMESPACE: u32 = 1 << 4;
const UNIT: u32 = 1 << 5;
const LABELS: u32 = 1 << 6;
const SERVICE: u32 = 1 << 7;
const LEVEL: u32 = 1 << 8;
const MESSAGE: u32 = 1 << 9;
const FIELDS: u32 = 1 << 10;
const TRACE_ID: u32 = 1 << 11;
const SPAN_ID: u32 = 1 << 12;
const PARENT_SPAN_ID: u32 = 1 << 13;
const DURATION_MS: u32 = 1 << 14;
const STATUS: u32 = 1 << 15;
const ATTRIBUTES: u32 = 1 << 16;

struct Parser<'a> {
    /// The whole message, known to be UTF-8.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips JSON whitespace (exactly serde_json's four bytes).
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Consumes `c`, or fails.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Consumes the literal `lit`, or fails.
    #[inline]
    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    /// After a member: `,` and the next key's quote (true), or `}` (false).
    #[inline]
    fn next_member(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.ws();
                self.eat(b'"')?;
                Some(true)
            }
            b'}' => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// The top-level object, from its first byte.
    fn event(&mut self, raw: &mut Raw<'a>) -> Option<()> {
        let mut seen = 0u32;
        self.ws();
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        self.eat(b'"')?;
        loop {
            let bit = self.key()?;
            // A repeated key, even after a `null`, is serde's "duplicate
            // field" error.
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            self.colon()?;
            match bit {
                KIND => {
                    raw.kind = self.opt_str()?;
                }
                TIME => {
                    raw.time = self.opt_time()?;
                }
                NAME => {
                    raw.name = self.opt_str()?;
                }
                VALUE => {
                    raw.value = self.opt_f64()?;
                }
                NAMESPACE => {
                    raw.namespace = self.opt_str()?;
                }
                UNIT => {
                    raw.unit = self.opt_str()?;
                }
                LABELS => {
                    raw.labels = self.opt_pairs()?;
                }
                SERVICE => {
                    raw.service = self.opt_str()?;
                }
                LEVEL => {
                    raw.level = self.opt_str()?;
                }
                MESSAGE => {
                    raw.message = self.opt_str()?;
                }
                FIELDS => {
                    raw.fields = self.opt_pairs()?;
                }
                TRACE_ID => {
                    raw.trace_id = self.opt_str()?;
                }
                SPAN_ID => {
                    raw.span_id = self.opt_str()?;
                }
                PARENT_SPAN_ID => {
                    raw.parent_span_id = self.opt_str()?;
                }
                DURATION_MS => {
                    raw.duration_ms = self.opt_f64()?;
                }
                STATUS => {
                    raw.status = self.opt_str()?;
                }
                ATTRIBUTES => {
                    raw.attributes = self.opt_pairs()?;
                }
                _ => return None,
            }
            if !self.next_member()? {
                return Some(());
            }
        }
    }

    /// A top-level key, after its opening quote, with its closing quote:
    /// its bit. Told apart by a byte or two and then compared whole, with
    /// no scan; an unknown key or one with escapes is left to serde.
    #[inline(always)]
    fn key(&mut self) -> Option<u32> {
        let b = self.b;
        let rest = b.get(self.i..)?;
        let mut is = |name: &[u8], bit: u32| -> Option<u32> {
            if rest.len() >= name.len() && &rest[..name.len()] == name {
                self.i += name.len();
                Some(bit)
            } else {
                None
            }
        };
        match *rest.first()? {
            b'k' => is(b"kind\"", KIND),
            b't' if rest.get(1) == Some(&b'i') => is(b"time\"", TIME),
            b't' => is(b"trace_id\"", TRACE_ID),
            b'n' if rest.get(4) == Some(&b'"') => is(b"name\"", NAME),
            b'n' => is(b"namespace\"", NAMESPACE),
            b'v' => is(b"value\"", VALUE),
            b'u' => is(b"unit\"", UNIT),
            b'l' if rest.get(1) == Some(&b'a') => is(b"labels\"", LABELS),
            b'l' => is(b"level\"", LEVEL),
            b's' if rest.get(1) == Some(&b'e') => is(b"service\"", SERVICE),
            b's' if rest.get(1) == Some(&b'p') => is(b"span_id\"", SPAN_ID),
            b's' => is(b"status\"", STATUS),
            b'm' => is(b"message\"", MESSAGE),
            b'f' => is(b"fields\"", FIELDS),
            b'p' => is(b"parent_span_id\"", PARENT_SPAN_ID),
            b'd' => is(b"duration_ms\"", DURATION_MS),
            b'a' => is(b"attributes\"", ATTRIBUTES),
            _ => None,
        }
    }

    /// `:` between a key and its value, with any whitespace around it.
    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        if self.peek() == Some(b':') {
            self.i += 1;
        } else {
            self.ws();
            self.eat(b':')?;
        }
        self.ws();
        Some(())
    }

    /// `null` (as serde's `deserialize_option` reads it): `Some(())`.
    #[inline]
    fn null(&mut self) -> Option<()> {
        self.lit(b"null")
    }

    /// `Option<CowStr>`: `null` or a string. Outer `None`: give up.
    #[inline]
    fn opt_str(&mut self) -> Option<Option<CowStr<'a>>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                Some(Some(CowStr(self.string()?)))
            }
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// `Option<f64>`: `null` or a number.
    #[inline]
    fn opt_f64(&mut self) -> Option<Option<f64>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => Some(Some(self.number()?.to_f64())),
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// `Option<Time>`: `null`, an RFC 3339 string or epoch milliseconds.
    fn opt_time(&mut self) -> Option<Option<Time>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                // The producers' forms need no scan for the closing quote:
                // `utc_millis` accepts only digits and separators.
                for len in [24, 20] {
                    if self.b.get(self.i + len) == Some(&b'"') {
                        if let Some(t) = utc_millis(&self.b[self.i..self.i + len]) {
                            self.i += len + 1;
                            return Some(Some(Time(t)));
                        }
                    }
                }
                let s = self.string()?;
                let t = match utc_millis(s.as_bytes()) {
                    Some(t) => t,
                    None => parse_rfc3339(&s).ok()?,
                };
                Some(Some(Time(t)))
            }
            b'-' | b'0'..=b'9' => Some(Some(Time(self.number()?.to_time()?))),
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// `Option<Pairs>`: `null` or an object of scalars.
    fn opt_pairs(&mut self) -> Option<Option<Pairs<'a>>> {
        match self.peek()? {
            b'{' => {
                self.i += 1;
                Some(Some(Pairs(self.pairs()?)))
            }
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// The members of a `labels`/`fields`/`attributes` object, after its
    /// `{`: string keys (repeats kept, as `Pairs` keeps them) to strings,
    /// numbers or booleans.
    fn pairs(&mut self) -> Option<Attributes<'a>> {
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(Vec::new());
        }
        let mut v = Vec::with_capacity(4);
        self.eat(b'"')?;
        loop {
            let key = self.string()?;
            self.colon()?;
            let val = match self.peek()? {
                b'"' => {
                    self.i += 1;
                    FieldValue::Str(self.string()?)
                }
                b'-' | b'0'..=b'9' => FieldValue::Num(self.number()?.to_f64()),
                b't' => {
                    self.lit(b"true")?;
                    FieldValue::Bool(true)
                }
                b'f' => {
                    self.lit(b"false")?;
                    FieldValue::Bool(false)
                }
                _ => return None,
            };
            v.push((key, val));
            if !self.next_member()? {
                return Some(v);
            }
        }
    }

    /// The rest of a string after its opening quote: borrowed when it has no
    /// escapes. Control characters are errors in serde_json: `None`.
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i;
        let end = special(self.b, start);
        match *self.b.get(end)? {
            b'"' => {
                self.i = end + 1;
                Some(Cow::Borrowed(&self.s[start..end]))
            }
            b'\\' => {
                self.i = end;
                self.escaped(start).map(Cow::Owned)
            }
            _ => None,
        }
    }

    /// A string with escapes, from `start` (after the quote) with `self.i`
    /// at the first backslash.
    #[cold]
    fn escaped(&mut self, start: usize) -> Option<String> {
        let mut out = String::with_capacity(self.i - start + 16);
        let mut from = start;
        loop {
            let at = special(self.b, self.i);
            out.push_str(&self.s[from..at]);
            match *self.b.get(at)? {
                b'"' => {
                    self.i = at + 1;
                    return Some(out);
                }
                b'\\' => {
                    let e = *self.b.get(at + 1)?;
                    self.i = at + 2;
                    out.push(match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4)?;
                            let mut n = 0u32;
                            for &h in hex {
                                n = n * 16 + char::from(h).to_digit(16)?;
                            }
                            self.i += 4;
                            // Surrogates (pairs, or serde's lone-surrogate
                            // errors) are left to serde; every other code
                            // unit is a char.
                            char::from_u32(n)?
                        }
                        _ => return None,
                    });
                    from = self.i;
                }
                _ => return None, // a control character
            }
        }
    }

    /// A JSON number, when serde_json's value for it is one exact
    /// operation away from its digits, which this repeats:
    ///
    /// - an integer of up to 19 digits: serde's `u64`/`i64` (or `-0.0`);
    /// - a decimal (fraction or exponent) whose digits, as an integer, are at
    ///   most 2^53 and whose power of ten is within ±22: serde computes
    ///   `digits as f64` times or divided by `1e{n}`, both exact operands, so
    ///   one correctly rounded operation, which is also what `str::parse`
    ///   gives (tested).
    ///
    /// Anything else (long integers, long decimals, big exponents, and all
    /// malformed numbers) is `None`: serde_json's own approximations and
    /// errors for those are its business.
    fn number(&mut self) -> Option<Num> {
        let b = self.b;
        let mut i = self.i;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let mut sig: u64;
        match b.get(i) {
            Some(b'0') => {
                sig = 0;
                i += 1;
                if matches!(b.get(i), Some(b'0'..=b'9')) {
                    return None; // a leading zero
                }
            }
            Some(&c @ b'1'..=b'9') => {
                sig = u64::from(c - b'0');
                i += 1;
                let first = i;
                while let Some(&c @ b'0'..=b'9') = b.get(i) {
                    if i - first == 18 {
                        return None; // 20 digits: may not fit a u64
                    }
                    sig = sig * 10 + u64::from(c - b'0');
                    i += 1;
                }
            }
            _ => return None,
        }
        let mut exp: i32 = 0;
        let mut float = false;
        if b.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let first = i;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                if sig > MAX_EXACT {
                    return None;
                }
                sig = sig * 10 + u64::from(c - b'0');
                i += 1;
            }
            if i == first || i - first > 400 {
                return None; // `1.`, or too many zeros to count on
            }
            exp = -((i - first) as i32);
        }
        if let Some(b'e' | b'E') = b.get(i) {
            float = true;
            i += 1;
            let neg_exp = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let first = i;
            let mut e: i32 = 0;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                if i - first == 4 {
                    return None;
                }
                e = e * 10 + i32::from(c - b'0');
                i += 1;
            }
            if i == first {
                return None; // `1e`
            }
            exp += if neg_exp { -e } else { e };
        }
        let num = if !float {
            if neg {
                Num::Neg(sig)
            } else {
                Num::Pos(sig)
            }
        } else {
            if sig > MAX_EXACT {
                return None;
            }
            let f = sig as f64;
            let f = if exp >= 0 {
                f * *POW10.get(exp as usize)?
            } else {
                f / *POW10.get(exp.unsigned_abs() as usize)?
            };
            Num::Float(if neg { -f } else { f })
        };
        self.i = i;
        Some(num)
    }
}

/// Same result, down to the bits of every float (`Debug` prints `-0.0`
/// and the shortest round-trip form of each `f64`).
#[cfg(test)]
fn same(a: &Result<Event<'_>, DecodeError>, b: &Result<Event<'_>, DecodeError>) -> bool {
    a == b && format!("{a:?}") == format!("{b:?}")
}

/// For events that must take the fast path (what klaxon's own tools write,
/// such as `klaxon produce --generate`): it does, and agrees with serde,
/// which accepts them.
#[cfg(test)]
pub(crate) fn assert_fast_and_identical(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let fast = decode(line).unwrap_or_else(|| panic!("fast path gave up on {text}"));
    let serde = super::json::decode_serde(line);
    assert!(serde.is_ok(), "{text}: {serde:?}");
    assert!(
        same(&fast, &serde),
        "{text}\n fast:  {fast:?}\n serde: {serde:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::decode_serde;
    use crate::decode::{Decoder, JsonDecoder};
    use proptest::prelude::*;

    /// The differential property on one input: what the fast path decides
    /// is what serde decides, and the decoder as a whole is the serde path.
    fn check(bytes: &[u8]) -> Result<(), String> {
        let serde = decode_serde(bytes);
        if let Some(fast) = decode(bytes) {
            if !same(&fast, &serde) {
                return Err(format!(
                    "{:?}\n fast:  {fast:?}\n serde: {serde:?}",
                    String::from_utf8_lossy(bytes)
                ));
            }
        }
        let full = JsonDecoder.decode(bytes);
        if !same(&full, &serde) {
            return Err(format!(
                "{:?}\n decoder: {full:?}\n serde:   {serde:?}",
                String::from_utf8_lossy(bytes)
            ));
        }
        Ok(())
    }

    #[test]
    fn cloudmart_example_decodes_identically_on_the_fast_path() {
        let text = include_str!("../../examples/cloudmart.jsonl");
        let (mut n, mut rejected) = (0, 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            n += 1;
            if decode_serde(line.as_bytes()).is_ok() {
                assert_fast_and_identical(line.as_bytes());
            } else {
                // The file's two deliberate mistakes (`lables`, a truncated
                // line) are serde's to report.
                rejected += 1;
                check(line.as_bytes()).unwrap();
            }
        }
        assert!(n > 5000 && rejected == 2, "{n} lines, {rejected} rejected");
    }

    #[test]
    fn hand_picked_inputs_agree() {
        let cases: &[&str] = &[
            // accepted by the fast path
            r#"{"kind":"metric","time":"2026-01-01T00:00:00Z","name":"x","value":1}"#,
            " \t\r\n{ \"kind\" : \"metric\" , \"time\" : 5 , \"name\" : \"x\" , \"value\" : -0 , \"labels\" : { \"a\" : \"b\" , \"a\" : \"c\" } } \n",
            r#"{"kind":"log","time":1,"service":"s","level":"E","message":"a\"b\\c\/d\b\f\n\r\t\u00e9\u4e2d\u0000","fields":{"k\u0041":true,"f":false,"n":-1.5e-3}}"#,
            r#"{"kind":"metric","time":null,"name":"x","value":1}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1,"labels":null,"service":null}"#,
            r#"{"kind":"metric","time":1.5e3,"name":"x","value":1E+22}"#,
            r#"{"kind":"metric","time":-0,"name":"x","value":9007199254740993}"#,
            r#"{"kind":"metric","time":-0.0,"name":"x","value":-9223372036854775808}"#,
            r#"{"kind":"metric","time":-9223372036854775808,"name":"x","value":0.1}"#,
            r#"{"kind":"metric","time":9223372036854775807,"name":"x","value":123456789012345678}"#,
            r#"{"kind":"span","time":1,"trace_id":"t","span_id":"s","service":"a","name":"n","duration_ms":-0.0,"status":"ok","attributes":{}}"#,
            r#"{"kind":"span","time":1,"trace_id":"","span_id":"s","service":"a","name":"n","duration_ms":1,"status":"ok"}"#,
            r#"{"kind":"métrique","time":1}"#,
            r#"{}"#,
            "{\"kind\":\"log\",\"time\":1,\"service\":\"s\",\"level\":\"E\",\"message\":\"a\u{7f}b\"}",
            // left to serde
            r#"{"kin\u0064":"metric","time":1,"name":"x","value":1}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1,"lables":{}}"#,
            r#"{"kind":"metric","kind":"metric","time":1,"name":"x","value":1}"#,
            r#"{"kind":null,"kind":"metric","time":1,"name":"x","value":1}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1,}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1} x"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1"#,
            r#"["metric",1,"x",1]"#,
            r#"{"kind":"metric","time":18446744073709551615,"name":"x","value":1}"#,
            r#"{"kind":"metric","time":1.5,"name":"x","value":1}"#,
            r#"{"kind":"metric","time":9.1e15,"name":"x","value":1}"#,
            r#"{"kind":"metric","time":"2026-01-01","name":"x","value":1}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":01}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1.}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":.5}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":+1}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1e}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1e400}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1e-400}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":0.30000000000000000000000001}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":123456789012345678901234567890}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":"1"}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1,"labels":{"a":null}}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1,"labels":{"a":{}}}"#,
            r#"{"kind":"metric","time":1,"name":"x","value":1,"labels":[]}"#,
            r#"{"kind":"log","time":1,"service":"s","level":"E","message":"\ud83d\ude00"}"#,
            r#"{"kind":"log","time":1,"service":"s","level":"E","message":"\ud83d"}"#,
            r#"{"kind":"log","time":1,"service":"s","level":"E","message":"\x"}"#,
            "{\"kind\":\"log\",\"time\":1,\"service\":\"s\",\"level\":\"E\",\"message\":\"a\tb\"}",
            "{\"kind\":\"metric\",\"time\":1,\"name\":\"x\",\"value\":1}\u{c}",
            "\u{feff}{\"kind\":\"metric\",\"time\":1,\"name\":\"x\",\"value\":1}",
            "",
            "   ",
            "null",
            "{",
        ];
        for c in cases {
            check(c.as_bytes()).unwrap();
        }
        // Invalid UTF-8 inside a string and outside one.
        check(b"{\"kind\":\"metric\",\"time\":1,\"name\":\"\xff\",\"value\":1}").unwrap();
        check(b"{\"kind\":\"metric\",\"time\":1,\"name\":\"x\",\"value\":1}\xc3").unwrap();
        // The first half really is taken by the fast path.
        for c in &cases[..15] {
            assert!(decode(c.as_bytes()).is_some(), "{c}");
        }
        for c in &cases[15..] {
            assert!(decode(c.as_bytes()).is_none(), "{c}");
        }
    }

    // ---- random inputs ------------------------------------------------

    /// JSON whitespace, mostly none, sometimes a byte that is not JSON
    /// whitespace (form feed, NBSP) to be refused by both.
    fn ws() -> impl Strategy<Value = String> {
        prop_oneof![
            150 => Just(String::new()),
            50 => proptest::collection::vec(
                prop_oneof![Just(' '), Just('\t'), Just('\n'), Just('\r')],
                1..4
            )
            .prop_map(|v| v.into_iter().collect()),
            1 => prop_oneof![Just("\u{c}".to_string()), Just("\u{a0}".to_string())],
        ]
    }

    /// A JSON string literal: plain ASCII, unicode, escapes of every kind
    /// (including surrogate pairs, lone surrogates and invalid escapes),
    /// raw control characters.
    fn string_lit() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            200 => "[a-zA-Z0-9 /._:-]{0,12}",
            20 => "[é中😀ü\u{7f}]{1,3}",
            20 => proptest::sample::select(vec![
                "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u00e9",
                "\\u4E2D", "\\u0000", "\\u0041",
            ])
            .prop_map(str::to_string),
            2 => Just("\\ud83d\\ude00".to_string()),
            2 => proptest::sample::select(vec![
                "\\ud83d", "\\ude00", "\\x", "\\u12g4", "\t", "\u{1}",
            ])
            .prop_map(str::to_string),
        ];
        proptest::collection::vec(piece, 0..4).prop_map(|v| format!("\"{}\"", v.concat()))
    }

    /// A JSON number literal, mostly valid: negatives, long digit strings,
    /// fractions, exponents of both signs and cases; sometimes malformed
    /// (leading zeros, `+`, `1.`, `1e`).
    fn number_lit() -> impl Strategy<Value = String> {
        let int = prop_oneof![
            30 => Just("0".to_string()),
            60 => "[1-9][0-9]{0,3}",
            20 => "[1-9][0-9]{10,22}",
            3 => proptest::sample::select(vec!["00", "01", ""]).prop_map(str::to_string),
        ];
        let frac = prop_oneof![
            60 => Just(String::new()),
            60 => "\\.[0-9]{1,4}",
            20 => "\\.[0-9]{12,25}",
            2 => Just(".".to_string()),
        ];
        let exp = prop_oneof![
            80 => Just(String::new()),
            30 => "[eE][+-]?[0-9]{1,2}",
            10 => "[eE][+-]?[0-9]{3,5}",
            2 => "[eE][+-]?",
        ];
        let sign = prop_oneof![80 => Just(""), 20 => Just("-"), 1 => Just("+")];
        (sign, int, frac, exp).prop_map(|(s, i, f, e)| format!("{s}{i}{f}{e}"))
    }

    fn time_lit() -> impl Strategy<Value = String> {
        prop_oneof![
            20 => (0i64..4_000_000_000_000).prop_map(|t| format!(
                "\"{}\"",
                crate::model::format_rfc3339(t)
            )),
            1 => prop_oneof![
                Just("\"2026-01-01T09:05:00.123+09:00\"".to_string()),
                Just("\"2026-01-01 00:00:00z\"".to_string()),
                Just("\"2026-02-30T00:00:00Z\"".to_string()),
                Just("\"yesterday\"".to_string()),
                Just("\"2026-01-01T00:00:0\\u0030Z\"".to_string()),
            ],
            10 => (-5_000_000_000_000i64..5_000_000_000_000).prop_map(|t| t.to_string()),
            1 => number_lit(),
            1 => proptest::sample::select(vec![
                "9007199254740993", "1.767225600e12", "-9223372036854775809", "1.5",
                "18446744073709551616", "-0", "-0.0",
            ])
            .prop_map(str::to_string),
        ]
    }

    /// Any scalar or structure, for values of the wrong type.
    fn any_value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => string_lit(),
            3 => number_lit(),
            1 => Just("true".to_string()),
            1 => Just("false".to_string()),
            1 => Just("null".to_string()),
            1 => Just("nul".to_string()),
            1 => Just("[]".to_string()),
            1 => Just("{}".to_string()),
            1 => Just("[1,{\"a\":2}]".to_string()),
        ]
    }

    fn pairs_lit() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            30 => string_lit(),
            15 => number_lit(),
            5 => Just("true".to_string()),
            5 => Just("false".to_string()),
            1 => any_value(),
        ];
        let member = (ws(), string_lit(), ws(), ws(), value, ws())
            .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
        prop_oneof![
            30 => proptest::collection::vec(member, 0..5)
                .prop_map(|m| format!("{{{}}}", m.join(","))),
            1 => Just("null".to_string()),
            1 => any_value(),
        ]
    }

    /// The value of a known key: mostly of the right type.
    fn value_for(key: &'static str) -> BoxedStrategy<String> {
        let right = match key {
            "kind" => prop_oneof![
                Just("\"metric\"".to_string()),
                Just("\"log\"".to_string()),
                Just("\"span\"".to_string()),
                string_lit(),
            ]
            .boxed(),
            "status" => prop_oneof![
                Just("\"ok\"".to_string()),
                Just("\"error\"".to_string()),
                string_lit(),
            ]
            .boxed(),
            "time" => time_lit().boxed(),
            "value" | "duration_ms" => number_lit().boxed(),
            "labels" | "fields" | "attributes" => pairs_lit().boxed(),
            _ => string_lit().boxed(),
        };
        prop_oneof![50 => right, 1 => Just("null".to_string()), 1 => any_value()].boxed()
    }

    const KEYS: [&str; 17] = [
        "kind",
        "time",
        "name",
        "value",
        "namespace",
        "unit",
        "labels",
        "service",
        "level",
        "message",
        "fields",
        "trace_id",
        "span_id",
        "parent_span_id",
        "duration_ms",
        "status",
        "attributes",
    ];

    /// The keys of a well-formed event of a random kind.
    fn keys_of(kind: usize) -> Vec<&'static str> {
        match kind {
            0 => vec![
                "kind",
                "time",
                "name",
                "value",
                "namespace",
                "unit",
                "labels",
            ],
            1 => vec!["kind", "time", "service", "level", "message", "fields"],
            _ => vec![
                "kind",
                "time",
                "trace_id",
                "span_id",
                "parent_span_id",
                "service",
                "name",
                "duration_ms",
                "status",
                "attributes",
            ],
        }
    }

    /// An event object: a kind's keys, some dropped, some foreign or unknown
    /// keys added, some repeated, shuffled, with random values and
    /// whitespace.
    fn event_lit() -> impl Strategy<Value = String> {
        let extra = prop_oneof![
            6 => Just(vec![]),
            1 => proptest::collection::vec(0usize..20, 1..3),
        ];
        (0usize..3, any::<u64>(), extra).prop_flat_map(|(kind, drop_mask, extra)| {
            let mut keys: Vec<&'static str> = keys_of(kind)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| drop_mask >> (i + 8) & 0xf != 0)
                .map(|(_, k)| k)
                .collect();
            for e in extra {
                // 17 known keys (foreign to this kind, or a repeat), and
                // three unknown ones.
                keys.push(KEYS.get(e).copied().unwrap_or(match e {
                    17 => "lables",
                    18 => "Kind",
                    _ => "",
                }));
            }
            let kind_lit = ["\"metric\"", "\"log\"", "\"span\""][kind];
            let members: Vec<BoxedStrategy<String>> = keys
                .into_iter()
                .map(|k| {
                    let v = if k == "kind" {
                        prop_oneof![9 => Just(kind_lit.to_string()), 1 => value_for(k)].boxed()
                    } else {
                        value_for(k)
                    };
                    (ws(), ws(), ws(), v, ws())
                        .prop_map(move |(a, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"))
                        .boxed()
                })
                .collect();
            (members.prop_shuffle(), ws(), ws())
                .prop_map(|(m, a, b)| format!("{a}{{{}}}{b}", m.join(",")))
        })
    }

    /// A byte for mutations: mostly JSON syntax, sometimes anything.
    fn mutation_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => proptest::sample::select(b"\"{}[],:\\ 0159-+.eEnulltruefalse".to_vec()),
            1 => any::<u8>(),
        ]
    }

    /// Replaces (0), inserts (1) or deletes (2) a byte at each position.
    fn mutate(s: &str, edits: &[(proptest::sample::Index, u8, u8)]) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(b.len() + 1);
            match op {
                0 if i < b.len() => b[i] = *byte,
                1 => b.insert(i, *byte),
                _ if i < b.len() => {
                    b.remove(i);
                }
                _ => {}
            }
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_events_agree(ev in event_lit()) {
            check(ev.as_bytes()).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn truncated_events_agree(ev in event_lit(), cut in any::<proptest::sample::Index>()) {
            let n = cut.index(ev.len() + 1);
            check(&ev.as_bytes()[..n]).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn mutated_events_agree(
            ev in event_lit(),
            edits in proptest::collection::vec(
                (any::<proptest::sample::Index>(), mutation_byte(), 0u8..3),
                1..4,
            ),
        ) {
            check(&mutate(&ev, &edits)).map_err(TestCaseError::fail)?;
        }

        /// Every number the fast path takes is the correctly rounded `f64`
        /// of its digits (and, by `random_events_agree`, serde_json's).
        #[test]
        fn numbers_are_correctly_rounded(lit in number_lit()) {
            let mut p = Parser { s: &lit, b: lit.as_bytes(), i: 0 };
            if let Some(n) = p.number() {
                if p.i == lit.len() {
                    let want: f64 = lit.parse().unwrap();
                    prop_assert_eq!(n.to_f64().to_bits(), want.to_bits(), "{}", lit);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        /// The eight-at-a-time scan finds what a byte loop finds.
        #[test]
        fn special_finds_the_first_quote_backslash_or_control(
            b in proptest::collection::vec(
                prop_oneof![
                    8 => 0x20u8..0x7f,
                    1 => proptest::sample::select(vec![b'"', b'\\', 0, 0x1f, 0x20, 0x21, 0x01, 0x7f, 0x80, 0xff, 0xc3, 0xa9]),
                    1 => any::<u8>(),
                ],
                0..40,
            ),
            from in any::<proptest::sample::Index>(),
        ) {
            let from = from.index(b.len() + 1);
            let want = (from..b.len())
                .find(|&i| b[i] == b'"' || b[i] == b'\\' || b[i] < 0x20)
                .unwrap_or(b.len());
            prop_assert_eq!(special(&b, from), want);
        }

        /// The shortcut for `time` strings agrees with `parse_rfc3339`
        /// whenever it answers, on timestamps near and over every limit
        /// (months 0–13, days 0–32, leap days, hours 24, seconds 60, …),
        /// with random digits or separators here and there.
        #[test]
        fn utc_millis_agrees_with_parse_rfc3339(
            fields in (1800u32..2500, 0u32..14, 0u32..33, 0u32..25, 0u32..61, 0u32..62, 0u32..1000),
            form in 0u8..4,
            noise in proptest::collection::vec((0usize..24, any::<u8>()), 0..2),
        ) {
            let (y, mo, d, h, mi, se, ms) = fields;
            let mut t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}");
            match form {
                0 => t.push('Z'),
                1 => t.push_str(&format!(".{ms:03}Z")),
                2 => t.push_str(&format!(".{ms:03}+09:00")),
                _ => t.push_str(&format!(".{ms:03}9Z")),
            }
            let mut b = t.into_bytes();
            for (at, byte) in noise {
                if at < b.len() {
                    b[at] = byte;
                }
            }
            if let Some(ms) = utc_millis(&b) {
                let t = std::str::from_utf8(&b).unwrap();
                prop_assert_eq!(Ok(ms), parse_rfc3339(t), "{}", t);
            }
        }
    }

    #[test]
    fn utc_millis_takes_what_producers_write() {
        for t in (0..2000i64).map(|i| 1_700_000_000_000 + i * 987_654_321 + (i % 3) * 1000) {
            let s = crate::model::format_rfc3339(t);
            assert_eq!(utc_millis(s.as_bytes()), Some(t), "{s}");
        }
        for s in [
            "2024-02-29T23:59:59.999Z",
            "2000-02-29T00:00:00Z",
            "1970-01-01T00:00:00Z",
        ] {
            assert_eq!(
                utc_millis(s.as_bytes()).map(Ok),
                Some(parse_rfc3339(s)),
                "{s}"
            );
        }
        for s in [
            "2100-02-29T00:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01t00:00:00Z",
        ] {
            assert_eq!(utc_millis(s.as_bytes()), None, "{s}");
        }
    }

    /// The generators above do reach every outcome, in useful numbers.
    #[test]
    fn random_events_cover_both_paths() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = event_lit();
        let (mut fast_ok, mut fast_err, mut serde_ok, mut serde_err) = (0, 0, 0, 0);
        let n = 5000;
        for _ in 0..n {
            let ev = strategy.new_tree(&mut runner).unwrap().current();
            check(ev.as_bytes()).unwrap();
            match decode(ev.as_bytes()) {
                Some(Ok(_)) => fast_ok += 1,
                Some(Err(_)) => fast_err += 1,
                None if decode_serde(ev.as_bytes()).is_ok() => serde_ok += 1,
                None => serde_err += 1,
            }
        }
        eprintln!(
            "of {n} random events: fast path {fast_ok} events + {fast_err} validation errors; \
             serde path {serde_ok} events + {serde_err} errors"
        );
        assert!(fast_ok > n / 10 && fast_err > n / 20 && serde_err > n / 10);
    }
}
