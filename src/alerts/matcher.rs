//! Label matchers, as silences and inhibit rules write them:
//! `InstanceId="i-0a1"`, `severity!="info"`, `InstanceId=~"i-0.*"`,
//! `service!~"test-.*"`.
//!
//! Semantics follow Alertmanager:
//! - a regular expression is anchored at both ends (`i-0.*` matches the
//!   whole value, as if written `^(?:i-0.*)$`);
//! - a label the alert does not have counts as the empty string, so
//!   `foo=""` matches an alert without `foo` and `foo!="x"` matches it too.

use std::fmt;

use regex_lite::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Anything that has labels to match: an alert, or a plain label map.
pub trait Labels {
    fn label(&self, name: &str) -> Option<&str>;
}

impl Labels for crate::model::Ordered<String> {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Labels for [(&str, &str)] {
    fn label(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// The four comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One `name op "value"` condition on an alert's labels.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored expression of `=~` / `!~`.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

/// Where in the written matcher a mistake is (a byte offset), and what.
#[derive(Clone, Debug, PartialEq)]
pub struct MatcherError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for MatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

impl Matcher {
    /// A matcher from its parts; fails on a bad regular expression.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, String> {
        let value = value.into();
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("bad regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Parses `name=value`, `name!="value"`, `name=~"re"`, `name!~"re"`.
    /// The value may be double-quoted (with `\"`, `\\` and `\n` escapes) or
    /// bare (the rest of the text, trimmed). Spaces around the operator are
    /// fine.
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let err = |at: usize, message: String| MatcherError { at, message };
        let start = s.len() - s.trim_start().len();
        let name_len = s[start..]
            .find(|c: char| !is_name_char(c))
            .unwrap_or(s.len() - start);
        let name = &s[start..start + name_len];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            return Err(err(
                start,
                format!(
                    "a matcher starts with a label name, as in `InstanceId=\"i-0a1\"`, not {s:?}"
                ),
            ));
        }
        let mut i = start + name_len;
        i += s[i..].len() - s[i..].trim_start().len();
        let op = if s[i..].starts_with("=~") {
            MatchOp::Re
        } else if s[i..].starts_with("!~") {
            MatchOp::NotRe
        } else if s[i..].starts_with("!=") {
            MatchOp::NotEq
        } else if s[i..].starts_with('=') {
            MatchOp::Eq
        } else {
            return Err(err(
                i,
                format!("expected one of =, !=, =~, !~ after `{name}`"),
            ));
        };
        i += op.as_str().len();
        i += s[i..].len() - s[i..].trim_start().len();
        let value = if let Some(rest) = s[i..].strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.char_indices();
            let mut end = None;
            while let Some((j, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1 + j + 1);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, c @ ('"' | '\\'))) => out.push(c),
                        // Regular expressions keep their own escapes: `\.`.
                        Some((_, c)) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => break,
                    },
                    c => out.push(c),
                }
            }
            let Some(end) = end else {
                return Err(err(i, "the quoted value has no closing `\"`".into()));
            };
            if !s[end..].trim().is_empty() {
                return Err(err(
                    end,
                    format!("unexpected text after the value: {:?}", s[end..].trim()),
                ));
            }
            out
        } else {
            s[i..].trim().to_string()
        };
        Matcher::new(name, op, value).map_err(|m| err(i, m))
    }

    /// Whether a label value (`None`: the alert lacks the label) matches.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::NotEq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => unreachable!("regex matchers are compiled in Matcher::new"),
        }
    }

    pub fn matches(&self, labels: &(impl Labels + ?Sized)) -> bool {
        self.matches_value(labels.label(&self.name))
    }
}

/// Every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &(impl Labels + ?Sized)) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Display for Matcher {
    /// The form [`Matcher::parse`] reads: `name=~"value"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op.as_str())?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_four_operators_quoted_or_bare() {
        for (text, name, op, value) in [
            (r#"InstanceId="i-0a1""#, "InstanceId", MatchOp::Eq, "i-0a1"),
            (r#"severity != "info""#, "severity", MatchOp::NotEq, "info"),
            (r#"InstanceId=~"i-0.*""#, "InstanceId", MatchOp::Re, "i-0.*"),
            ("service!~test-.*", "service", MatchOp::NotRe, "test-.*"),
            (r#"msg="say \"hi\"""#, "msg", MatchOp::Eq, r#"say "hi""#),
            (r#"host=~"a\.b""#, "host", MatchOp::Re, r"a\.b"),
            ("http.route=/x", "http.route", MatchOp::Eq, "/x"),
        ] {
            let got = m(text);
            assert_eq!(
                (got.name.as_str(), got.op, got.value.as_str()),
                (name, op, value),
                "{text}"
            );
            // Display gives back a form that parses to the same matcher.
            assert_eq!(m(&got.to_string()), got, "{text}");
        }
    }

    #[test]
    fn errors_point_into_the_text() {
        for (text, at, words) in [
            (r#"="x""#, 0, "starts with a label name"),
            (r#"InstanceId~"x""#, 10, "expected one of"),
            (r#"a="x"#, 2, "no closing"),
            (r#"a="x" b"#, 5, "unexpected text"),
            (r#"a=~"(""#, 3, "bad regular expression"),
        ] {
            let e = Matcher::parse(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
        }
    }

    /// (matcher, label value or None for a missing label, expected)
    #[test]
    fn regexes_are_anchored_and_missing_labels_are_empty() {
        for (text, value, want) in [
            (r#"i=~"i-0.*""#, Some("i-0a1"), true),
            (r#"i=~"i-0.*""#, Some("xi-0a1"), false), // anchored at the start
            (r#"i=~"i-0""#, Some("i-0a1"), false),    // and at the end
            (r#"i=~"a|b""#, Some("b"), true),         // (?:…) around alternations
            (r#"i!~"i-0.*""#, Some("i-1"), true),
            (r#"i!~"i-0.*""#, Some("i-0"), false),
            (r#"i="""#, None, true),
            (r#"i!="x""#, None, true),
            (r#"i="x""#, None, false),
            (r#"i=~".*""#, None, true),
            (r#"i=~".+""#, None, false),
            (r#"i!="x""#, Some("x"), false),
        ] {
            assert_eq!(m(text).matches_value(value), want, "{text} on {value:?}");
        }
    }

    #[test]
    fn serializes_as_its_written_form() {
        let x = m(r#"InstanceId =~ "i-0.*""#);
        let json = serde_json::to_string(&x).unwrap();
        assert_eq!(json, r#""InstanceId=~\"i-0.*\"""#);
        let back: Matcher = serde_json::from_str(&json).unwrap();
        assert_eq!(back, x);
        assert!(back.matches_value(Some("i-0b2")), "the regex is rebuilt");
    }
}
