//! The CLI's side of the dispatch API: where it is (`--url`, `KLAXON_URL`),
//! the token (`--token-file`, `KLAXON_API_TOKEN`), output formats, and a
//! small HTTP/1.1 client.
//!
//! The client speaks plain HTTP over [`std::net::TcpStream`], one request
//! per connection: the API listens on localhost or a cluster network, and
//! a full HTTP stack (TLS, pooling, redirects) would cost more build time
//! than the CLI's four calls are worth. An `https://` URL is refused with
//! a message (reach a TLS-fronted API through a port-forward).

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::config::run::{Env, Secret};

/// Where the API is and how to write to it (every API subcommand takes
/// these).
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The dispatch API: `klaxon run`'s `http.listen`.
    #[arg(
        long,
        env = "KLAXON_URL",
        default_value = "http://127.0.0.1:9464",
        global = true
    )]
    pub url: String,
    /// A file holding the API token for writes (default: the
    /// KLAXON_API_TOKEN environment variable).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// `-o table` (aligned columns, for people) or `-o json` (the API's JSON,
/// pretty-printed, for scripts).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// What went wrong talking to the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad arguments (a matcher, a time, a URL, no author).
    Usage,
    /// The token file cannot be read.
    Token,
    /// Nothing answers at the URL.
    Unreachable,
    /// Something answered, but not the klaxon API's HTTP/JSON.
    Protocol,
    /// The API answered with an error (its `kind` is in the message).
    Api,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ClientError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

/// Prints the outcome of a command: its output on stdout, or `error: …`
/// on stderr and exit code 1.
pub fn finish(result: Result<String, ClientError>) -> i32 {
    match result {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `$USER` (or `$LOGNAME`): who is running the command.
pub fn whoami(env: &dyn Env) -> Option<String> {
    env.var("USER").or_else(|| env.var("LOGNAME"))
}

/// Pretty JSON and a newline.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a Value always serializes");
    s.push('\n');
    s
}

/// A query string from `(name, value)` pairs, percent-encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut q = form_urlencoded::Serializer::new(String::from("?"));
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A path segment, percent-encoded (ids are hex, but a typed one may not be).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A connection to the dispatch API.
pub struct Client {
    /// `host:port` as written (for `Host:` and messages).
    authority: String,
    host: String,
    port: u16,
    /// A path prefix from the URL (`http://proxy/klaxon`), no trailing `/`.
    prefix: String,
    url: String,
    token: Option<Secret>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("token", &self.token)
            .finish()
    }
}

impl Client {
    /// A client for `args`, with the token from `--token-file` or
    /// `KLAXON_API_TOKEN` in `env`.
    pub fn from_args(args: &ApiArgs, env: &dyn Env) -> Result<Client, ClientError> {
        let token = match &args.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ClientError::new(
                        ErrorKind::Token,
                        format!("cannot read the token file {}: {e}", path.display()),
                    )
                })?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(ClientError::new(
                        ErrorKind::Token,
                        format!("the token file {} is empty", path.display()),
                    ));
                }
                Some(Secret::new(t))
            }
            None => env.var("KLAXON_API_TOKEN").map(|t| Secret::new(t.trim())),
        };
        Client::new(&args.url, token)
    }

    /// A client for `url` (`http://host[:port][/prefix]`).
    pub fn new(url: &str, token: Option<Secret>) -> Result<Client, ClientError> {
        let bad = |why: &str| {
            ClientError::new(
                ErrorKind::Usage,
                format!("--url {url:?}: {why} (e.g. http://127.0.0.1:9464)"),
            )
        };
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported by the CLI; use plain http to the \
                 API (e.g. through `kubectl port-forward` or an SSH tunnel)",
            ));
        } else {
            return Err(bad("the URL must start with http://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => 80,
                None => return Err(bad("unexpected text after `]`")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_string(), 80),
            }
        };
        Ok(Client {
            authority: authority.to_string(),
            host,
            port,
            prefix: path.trim_end_matches('/').to_string(),
            url: url.trim_end_matches('/').to_string(),
            token,
            timeout: Duration::from_secs(30),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send("GET", path, None)
    }

    /// One request; the JSON reply, or the API's error as a [`ClientError`]
    /// of kind [`ErrorKind::Api`].
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let unreachable = |e: std::io::Error| {
            ClientError::new(
                ErrorKind::Unreachable,
                format!(
                    "cannot reach the klaxon API at {}: {e} (is `klaxon run` running there? \
                     set --url or KLAXON_URL)",
                    self.url
                ),
            )
        };
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(unreachable)?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut stream = stream.ok_or_else(|| unreachable(last))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(unreachable)?;

        let body = body.map(|b| serde_json::to_vec(b).expect("a Value always serializes"));
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: klaxon/{}\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.prefix,
            self.authority,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {}\r\n", t.expose()));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = Vec::new();
        stream
            .write_all(req.as_bytes())
            .and_then(|()| stream.write_all(&body))
            .and_then(|()| stream.flush())
            .and_then(|()| stream.read_to_end(&mut raw))
            .map_err(|e| {
                ClientError::new(
                    ErrorKind::Unreachable,
                    format!("{method} {}{path}: {e}", self.url),
                )
            })?;
        let (status, text) = parse_response(&raw).map_err(|why| {
            ClientError::new(
                ErrorKind::Protocol,
                format!(
                    "{} did not answer like the klaxon API ({why}); is --url right?",
                    self.url
                ),
            )
        })?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return json.ok_or_else(|| {
                ClientError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{method} {}{path} answered {status} without JSON; is --url the klaxon API?",
                        self.url
                    ),
                )
            });
        }
        let message = match json.as_ref().map(|j| &j["error"]) {
            Some(Value::Object(e)) => format!(
                "{} ({status} {}): {}",
                e.get("kind").and_then(Value::as_str).unwrap_or("error"),
                method_path(method, path),
                e.get("message").and_then(Value::as_str).unwrap_or(""),
            ),
            _ => format!(
                "{} answered {status}: {}",
                method_path(method, path),
                text.trim()
            ),
        };
        Err(ClientError::new(ErrorKind::Api, message))
    }
}

fn method_path(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    format!("{method} {path}")
}

/// The status and body of a complete HTTP/1.1 response (a body with
/// `Content-Length`, chunked, or up to the end of the connection).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the header is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
        return Err(format!("not HTTP: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    let text = String::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
    Ok((status, text))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk has no size line")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b.get(..size).ok_or("a chunk is cut short")?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).ok_or("a chunk is cut short")?;
    }
}

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON string field, or `""`.
pub fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or("")
}

#[cfg(test)]
pub(crate) mod testing {
    //! The dispatch API on 127.0.0.1:0, on a thread of its own, for the
    //! CLI's tests.

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::api::memory::MemoryBackend;
    use crate::config::run::Secret;
    use crate::model::Millis;

    /// Serves the router for `backend` (clock fixed at `now`); the URL.
    pub fn serve(backend: Arc<MemoryBackend>, now: Millis, token: Option<&str>) -> String {
        let app =
            crate::api::router_with_clock(backend, token.map(Secret::new), Arc::new(move || now));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        format!("http://{addr}")
    }

    pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (url, host, port, prefix) in [
            ("http://127.0.0.1:9464", "127.0.0.1", 9464, ""),
            ("http://localhost", "localhost", 80, ""),
            ("http://[::1]:9464/", "::1", 9464, ""),
            ("http://proxy:8080/klaxon/", "proxy", 8080, "/klaxon"),
        ] {
            let c = Client::new(url, None).unwrap();
            assert_eq!(
                (c.host.as_str(), c.port, c.prefix.as_str()),
                (host, port, prefix),
                "{url}"
            );
        }
        for (url, words) in [
            ("https://k:9464", "https is not supported"),
            ("127.0.0.1:9464", "must start with http://"),
            ("http://k:port", "bad port"),
            ("http://", "no host"),
        ] {
            let e = Client::new(url, None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Usage);
            assert!(e.message.contains(words), "{url}: {e}");
        }
    }

    #[test]
    fn responses_with_a_length_chunked_or_to_the_end() {
        for (raw, status, body) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]",
                200,
                "[]",
            ),
            (
                "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
                404,
                "{\"a\":1}",
            ),
            ("HTTP/1.0 500 Oops\r\n\r\nboom", 500, "boom"),
        ] {
            assert_eq!(
                parse_response(raw.as_bytes()).unwrap(),
                (status, body.to_string()),
                "{raw}"
            );
        }
        for raw in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 x\r\n\r\n",
        ] {
            assert!(parse_response(raw.as_bytes()).is_err(), "{raw}");
        }
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let t = table(
            &["ID", "STATE", "COMMENT"],
            &[
                vec!["a1".into(), "active".into(), "patching".into()],
                vec!["b22222".into(), "pending".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "ID      STATE    COMMENT\n\
             a1      active   patching\n\
             b22222  pending\n"
        );
    }

    #[test]
    fn nothing_listening_is_a_clear_error() {
        // A port that was just free.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let e = c.get("/api/v1/alerts").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(
            e.message
                .contains("cannot reach the klaxon API at http://127.0.0.1:"),
            "{e}"
        );
        assert!(e.message.contains("KLAXON_URL"), "{e}");
    }

    #[test]
    fn the_token_is_not_in_debug() {
        let c = Client::new("http://k:1", Some(Secret::new("tok-3b1d"))).unwrap();
        assert!(!format!("{c:?}").contains("tok-3b1d"));
        let args = ApiArgs {
            url: "http://k:1".into(),
            token_file: None,
        };
        let c =
            Client::from_args(&args, &testing::env(&[("KLAXON_API_TOKEN", "tok-3b1d")])).unwrap();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok-3b1d"));
        let args = ApiArgs {
            url: "http://k:1".into(),
            token_file: Some("/nonexistent/token".into()),
        };
        let e = Client::from_args(&args, &testing::env(&[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Token);
    }
}
