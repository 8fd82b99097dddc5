//! SMS through AWS SNS `Publish` (cargo feature `sns`).
//!
//! No AWS SDK: one form POST to the SNS query API
//! (`Action=Publish&PhoneNumber=…&Message=…&Version=2010-03-31`, SMS type
//! `Transactional`), signed with Signature Version 4 here ([`sign`], checked
//! against botocore's signer in the tests). Credentials come from
//! `access_key_id`/`secret_access_key` (and `session_token` for temporary
//! credentials), each `{ env: … }` or `{ file: … }`; instance roles and
//! SSO are not supported. The text is the `sms` template in one segment.
//!
//! Errors: `Throttling` (or 429) is a rate limit; other `Sender` faults
//! (`InvalidParameter` for a bad number, `AuthorizationError`, …) are
//! permanent; 5xx are transient.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::template::Templates;
use super::webhook::hex;
use super::{retry_after_header, sms, BoxFuture, Message, Notifier, NotifyError, Receipt};
use crate::config::receivers::SnsConfig;
use crate::config::run::Secret;

pub struct SnsNotifier {
    name: String,
    http: reqwest::Client,
    endpoint: url::Url,
    host: String,
    region: String,
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    default_to: Vec<String>,
    templates: Templates,
}

impl fmt::Debug for SnsNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsNotifier")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// What SigV4 needs of one POST to `/`.
pub struct Signing<'a> {
    pub host: &'a str,
    pub body: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    /// `20260101T000030Z`.
    pub amz_date: &'a str,
}

/// The `Authorization` header of a SigV4-signed form POST to `/` (headers
/// signed: content-type, host, x-amz-date, x-amz-security-token if any).
pub fn sign(s: &Signing<'_>) -> String {
    let date = &s.amz_date[..8];
    let mut headers = vec![
        ("content-type", CONTENT_TYPE.to_string()),
        ("host", s.host.to_string()),
        ("x-amz-date", s.amz_date.to_string()),
    ];
    if let Some(t) = s.session_token {
        headers.push(("x-amz-security-token", t.to_string()));
    }
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex(&Sha256::digest(s.body.as_bytes()))
    );
    let scope = format!("{date}/{}/{}/aws4_request", s.region, s.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        s.amz_date,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(
        format!("AWS4{}", s.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k = hmac(&k, s.region.as_bytes());
    let k = hmac(&k, s.service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    let signature = hex(&hmac(&k, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        s.access_key_id
    )
}

/// `<Code>…</Code>` and `<Message>…</Message>` of an SNS error body.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

impl SnsNotifier {
    pub fn new(
        name: &str,
        c: SnsConfig,
        templates: Templates,
        timeout: Duration,
    ) -> Result<Self, String> {
        let endpoint: url::Url = format!("{}/", c.endpoint)
            .parse()
            .map_err(|e| format!("`endpoint`: {e}"))?;
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err("`endpoint` has no host".into()),
        };
        Ok(SnsNotifier {
            name: name.to_string(),
            http: super::http_client(timeout)?,
            endpoint,
            host,
            region: c.region,
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            default_to: c.default_to,
            templates,
        })
    }

    async fn deliver(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let n = msg.notification;
        let to: Vec<String> = match msg.target {
            Some(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
            None => self.default_to.clone(),
        };
        if to.is_empty() {
            return Err(NotifyError::permanent(
                "sns: no number (no target, no default_to)",
            ));
        }
        let r = self
            .templates
            .for_team(&n.team)
            .render(n, &self.name, msg.digest);
        let text = sms::one_segment(&r.sms);
        for number in &to {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("Action", "Publish")
                .append_pair("PhoneNumber", number)
                .append_pair("Message", &text)
                .append_pair("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType")
                .append_pair("MessageAttributes.entry.1.Value.DataType", "String")
                .append_pair(
                    "MessageAttributes.entry.1.Value.StringValue",
                    "Transactional",
                )
                .append_pair("Version", "2010-03-31")
                .finish();
            let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let auth = sign(&Signing {
                host: &self.host,
                body: &body,
                region: &self.region,
                service: "sns",
                access_key_id: self.access_key_id.expose(),
                secret_access_key: self.secret_access_key.expose(),
                session_token: self.session_token.as_ref().map(Secret::expose),
                amz_date: &amz_date,
            });
            let mut req = self
                .http
                .post(self.endpoint.clone())
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .header("x-amz-date", &amz_date)
                .header(reqwest::header::AUTHORIZATION, auth);
            if let Some(t) = &self.session_token {
                req = req.header("x-amz-security-token", t.expose());
            }
            let res = req
                .body(body)
                .send()
                .await
                .map_err(NotifyError::from_reqwest)?;
            let status = res.status().as_u16();
            if (200..300).contains(&status) {
                continue;
            }
            let retry_after = retry_after_header(res.headers());
            let text = res.text().await.unwrap_or_default();
            let code = xml_field(&text, "Code").unwrap_or("");
            let message = xml_field(&text, "Message").unwrap_or(&text);
            let mut e =
                NotifyError::from_status(status, retry_after, &format!("sns {code}: {message}"));
            if code == "Throttling" || code == "ThrottlingException" {
                e.kind = super::NotifyErrorKind::RateLimited;
            }
            return Err(e);
        }
        Ok(Receipt { thread: None })
    }
}

impl Notifier for SnsNotifier {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>> {
        Box::pin(self.deliver(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Kind;
    use crate::notify::testdata::notification;
    use crate::notify::NotifyErrorKind;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// The expected signature comes from botocore's SigV4Auth (sns,
    /// us-east-1) for the same request, computed once in Python.
    #[test]
    fn signs_like_botocore() {
        let auth = sign(&Signing {
            host: "127.0.0.1:4566",
            body: "Action=Publish&Message=%5BALARM%5D+CPU&PhoneNumber=%2B15551234567&Version=2010-03-31",
            region: "us-east-1",
            service: "sns",
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("TOKEN123"),
            amz_date: "20260101T000030Z",
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sns/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=ed0027c272ee8d374461ae2fee56cf7a77f94e97122d53475c76002c1c6c6b91"
        );
    }

    fn notifier(server: &MockServer) -> SnsNotifier {
        SnsNotifier::new(
            "sns",
            SnsConfig {
                region: "eu-west-1".into(),
                access_key_id: Secret::new("AKIDEXAMPLE"),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: None,
                endpoint: server.uri(),
                default_to: vec!["+15551234567".into()],
            },
            Templates::default(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn publishes_a_signed_sms() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/"))
            .and(header("content-type", CONTENT_TYPE))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult></PublishResponse>",
            ))
            .expect(1)
            .mount(&server)
            .await;
        let sns = notifier(&server);
        let n = notification(Kind::Firing);
        sns.send(&Message::new(&n)).await.unwrap();
        let req = &server.received_requests().await.unwrap()[0];
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("Publish"));
        assert_eq!(get("PhoneNumber"), Some("+15551234567"));
        assert_eq!(
            get("Message"),
            Some("[ALARM] CloudMart-EC2-HighCPU i-0abc: CPU 97.5% on i-0abc")
        );
        assert_eq!(
            get("MessageAttributes.entry.1.Value.StringValue"),
            Some("Transactional")
        );
        // The signature verifies over what was actually received.
        let date = req.headers.get("x-amz-date").unwrap().to_str().unwrap();
        let host = req.headers.get("host").unwrap().to_str().unwrap();
        let want = sign(&Signing {
            host,
            body: std::str::from_utf8(&req.body).unwrap(),
            region: "eu-west-1",
            service: "sns",
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            amz_date: date,
        });
        assert_eq!(
            req.headers.get("authorization").unwrap().to_str().unwrap(),
            want
        );
    }

    #[tokio::test]
    async fn errors_classify() {
        let server = MockServer::start().await;
        let sns = notifier(&server);
        let n = notification(Kind::Firing);
        let err = |code: &str| {
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>Invalid parameter: PhoneNumber</Message></Error></ErrorResponse>")
        };
        for (resp, kind) in [
            (
                ResponseTemplate::new(400).set_body_string(err("InvalidParameter")),
                NotifyErrorKind::Permanent,
            ),
            (
                ResponseTemplate::new(400).set_body_string(err("Throttling")),
                NotifyErrorKind::RateLimited,
            ),
            (
                ResponseTemplate::new(503).set_body_string("busy"),
                NotifyErrorKind::Transient,
            ),
        ] {
            server.reset().await;
            Mock::given(method("POST"))
                .respond_with(resp)
                .mount(&server)
                .await;
            let e = sns.send(&Message::new(&n)).await.unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
        }
    }
}
