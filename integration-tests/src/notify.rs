//! Helpers for the notifier tests (`tests/notify_*.rs`): receivers from
//! YAML, a real SMTP server, captured logs.
//!
//! The email tests need an SMTP server that stores what it accepts:
//! `scripts/smtp-sink.py` (aiosmtpd). `.ci/run` starts one and sets
//! `KLAXON_TEST_SMTP=127.0.0.1:2525` and `KLAXON_TEST_SMTP_DIR` (where it
//! writes each message as JSON). Without them, the tests start their own
//! sink where `python3` has aiosmtpd, and otherwise skip with a loud
//! message.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use klaxon::config::receivers::{parse_receivers, ReceiverConfig, ReceiversConfig};
use klaxon::config::yaml;

/// Receivers from the YAML of a `receivers:` mapping, with `env` as the
/// environment.
pub fn receivers(text: &str, env: &[(&str, &str)]) -> ReceiversConfig {
    let env: std::collections::BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let doc = yaml::parse(text).expect("test YAML parses");
    parse_receivers(Path::new("klaxon.yaml"), &doc, &env).unwrap_or_else(|e| panic!("{e}"))
}

/// The one receiver of `text`.
pub fn receiver(text: &str, env: &[(&str, &str)]) -> ReceiverConfig {
    let mut r = receivers(text, env);
    assert_eq!(r.receivers.len(), 1);
    r.receivers.pop_first().unwrap().1
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A message the sink accepted, decoded by Python's email package.
#[derive(Debug, Clone)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// (content type, decoded text with `\n` line ends) of each leaf part.
    pub parts: Vec<(String, String)>,
}

impl Mail {
    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(t, _)| t == content_type)
            .map(|(_, s)| s.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }
}

/// A running SMTP sink.
pub struct SmtpSink {
    pub host: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn listening(addr: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The SMTP sink from `KLAXON_TEST_SMTP`/`KLAXON_TEST_SMTP_DIR`, or one
/// started for this test, or `None` (after a loud message) when neither
/// can be had.
pub fn smtp_sink() -> Option<SmtpSink> {
    let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    if let (Some(addr), Some(dir)) = (var("KLAXON_TEST_SMTP"), var("KLAXON_TEST_SMTP_DIR")) {
        let (host, port) = addr
            .rsplit_once(':')
            .expect("KLAXON_TEST_SMTP is host:port");
        return Some(SmtpSink {
            host: host.into(),
            port: port.parse().expect("a port"),
            dir: dir.into(),
            child: None,
        });
    }
    start_sink(&[])
}

/// A sink of our own (python3 with aiosmtpd), with extra arguments for
/// `scripts/smtp-sink.py` (e.g. `--auth user:pass`); `None` after a loud
/// message when aiosmtpd is missing.
pub fn start_sink(args: &[&str]) -> Option<SmtpSink> {
    let script = crate::workspace().join("scripts/smtp-sink.py");
    let has_aiosmtpd = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_aiosmtpd {
        eprintln!(
            "\n*** SKIPPED: no SMTP server for the email tests. Set KLAXON_TEST_SMTP=host:port and \
             KLAXON_TEST_SMTP_DIR (scripts/smtp-sink.py), or `pip install aiosmtpd`. ***\n"
        );
        return None;
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("klaxon-smtp-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("python3")
        .arg(&script)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(&dir)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let sink = SmtpSink {
        host: "127.0.0.1".into(),
        port,
        dir,
        child: Some(child),
    };
    assert!(
        listening(&format!("127.0.0.1:{port}"), Duration::from_secs(15)),
        "the SMTP sink did not start"
    );
    Some(sink)
}

impl SmtpSink {
    /// Every stored message with `rcpt` among its recipients.
    pub fn mails_to(&self, rcpt: &str) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        });
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text).expect("sink JSON");
            let rcpts: Vec<String> = v["rcpt_tos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            if !rcpts.iter().any(|r| r == rcpt) {
                continue;
            }
            out.push(Mail {
                mail_from: v["mail_from"].as_str().unwrap_or_default().into(),
                rcpt_tos: rcpts,
                subject: v["subject"].as_str().unwrap_or_default().into(),
                headers: v["headers"].as_object().cloned().unwrap_or_default(),
                parts: v["parts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["content_type"].as_str().unwrap().to_string(),
                            // SMTP line ends are CRLF
                            p["text"].as_str().unwrap_or_default().replace("\r\n", "\n"),
                        )
                    })
                    .collect(),
            });
        }
        out
    }

    /// Polls until `n` messages to `rcpt` are stored (or `within` passes).
    pub fn wait_for(&self, rcpt: &str, n: usize, within: Duration) -> Vec<Mail> {
        let start = Instant::now();
        loop {
            let m = self.mails_to(rcpt);
            if m.len() >= n || start.elapsed() > within {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Everything klaxon logs (any level) in this test process.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global subscriber at TRACE that records every log
/// line, and returns the record.
pub fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let w = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        logs
    })
    .clone()
}
