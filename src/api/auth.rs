//! The bearer token that writes need.
//!
//! - No token configured: every write is refused (403) with a message that
//!   says how to turn writes on. A dispatch API that anyone on the network
//!   can silence is worse than one that cannot be written at all.
//! - A token configured: a write needs `Authorization: Bearer <token>`;
//!   a missing or wrong one is a 401. The comparison takes the same time
//!   wherever the first differing byte is.
//!
//! The token is a [`Secret`]: it is never part of an error message, a log
//! line or a `Debug` print.

use axum::http::{header, HeaderMap};

use super::{ApiError, ApiErrorKind};
use crate::config::run::Secret;

/// Checks the `Authorization` header of a write against `token`.
pub fn check_write(token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::new(
            ApiErrorKind::Forbidden,
            "writes are disabled: no API token is configured; set `http.token` \
             ({ env: NAME } or { file: PATH }) in klaxon.yaml or KLAXON_API_TOKEN",
        ));
    };
    let unauthorized = |why: &str| ApiError::new(ApiErrorKind::Unauthorized, why.to_string());
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "this write needs an `Authorization: Bearer <token>` header",
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or_else(|| unauthorized("the `Authorization` header must be `Bearer <token>`"))?;
    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("the bearer token is not valid"))
    }
}

/// Equal bytes, in a time that depends only on the lengths (the length of
/// the configured token is not a secret worth protecting; its bytes are).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    // Keep the optimizer from short-circuiting the loop above.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        for (a, b, want) in [
            ("s3cret", "s3cret", true),
            ("s3cret", "s3creT", false),
            ("s3cret", "s3cre", false),
            ("s3cre", "s3cret", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                want,
                "{a} {b}"
            );
        }
    }

    /// (configured token, Authorization header, expected error kind)
    #[test]
    fn writes_need_the_configured_token() {
        let t = Secret::new("s3cret");
        for (token, auth, want) in [
            (Some(&t), Some("Bearer s3cret"), None),
            (Some(&t), Some("bearer s3cret"), None), // the scheme is case-insensitive
            (Some(&t), Some("Bearer  s3cret "), None),
            (
                Some(&t),
                Some("Bearer wrong"),
                Some(ApiErrorKind::Unauthorized),
            ),
            (
                Some(&t),
                Some("Basic czNjcmV0"),
                Some(ApiErrorKind::Unauthorized),
            ),
            (Some(&t), Some("s3cret"), Some(ApiErrorKind::Unauthorized)),
            (Some(&t), None, Some(ApiErrorKind::Unauthorized)),
            (None, Some("Bearer s3cret"), Some(ApiErrorKind::Forbidden)),
            (None, None, Some(ApiErrorKind::Forbidden)),
        ] {
            let got = check_write(token, &headers(auth)).err();
            assert_eq!(got.as_ref().map(|e| e.kind), want, "{auth:?}");
            if let Some(e) = got {
                assert!(!e.message.contains("s3cret"), "{e}");
            }
        }
    }

    #[test]
    fn the_refusal_without_a_token_says_how_to_turn_writes_on() {
        let e = check_write(None, &headers(None)).unwrap_err();
        assert!(e.message.contains("http.token"), "{e}");
        assert!(e.message.contains("KLAXON_API_TOKEN"), "{e}");
    }
}
