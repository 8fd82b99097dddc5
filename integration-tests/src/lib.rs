//! Helpers for klaxon's end-to-end tests (the tests live in `tests/`).
//!
//! The tests that need Kafka take the broker from `KLAXON_TEST_BROKERS`
//! (`scripts/dev-kafka.sh start` runs tansu on 127.0.0.1:9092). They run
//! the real `klaxon` binary: `KLAXON_BIN`, or `target/release/klaxon`, or
//! `target/debug/klaxon`, whichever is set or newest.

pub mod dispatch;
pub mod docker;
pub mod notify;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The broker the tests use, if one is configured.
///
/// `KLAXON_TEST_BROKERS` if set; otherwise, where a Docker engine answers,
/// an Apache Kafka container from testcontainers' Kafka module, shared by
/// the whole test process.
pub fn brokers() -> Option<String> {
    if let Some(b) = std::env::var("KLAXON_TEST_BROKERS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return Some(b);
    }
    if docker::docker_available() {
        return docker::kafka();
    }
    None
}

/// The broker, or a panic that says how to get one. Tests that need Kafka
/// call this; they fail (not pass) without a broker.
pub fn require_brokers() -> String {
    brokers().expect(
        "these tests need a Kafka-compatible broker: run `scripts/dev-kafka.sh start` \
         and set KLAXON_TEST_BROKERS=127.0.0.1:9092 (or have a Docker engine, for \
         testcontainers' Apache Kafka)",
    )
}

/// The `klaxon` binary under test.
pub fn klaxon_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KLAXON_BIN") {
        return PathBuf::from(p);
    }
    let candidates = ["target/release/klaxon", "target/debug/klaxon"].map(|p| workspace().join(p));
    let (built, bin) = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max()
        .expect("build the binary first: cargo build --release (or set KLAXON_BIN)");
    // `cargo test -p integration-tests` builds the library, not the binary:
    // refuse to test a binary older than the code it is meant to run.
    if let Some((edited, file)) = newest_source(&workspace().join("src")) {
        assert!(
            edited <= built,
            "{} is older than {} (edited since it was built): run `cargo build` \
             (or `cargo test --workspace`, which builds it), or set KLAXON_BIN",
            bin.display(),
            file.display()
        );
    }
    bin.clone()
}

/// The most recently modified file under `dir`, with its time.
fn newest_source(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_source(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        };
        if let Some(f) = found {
            if newest.as_ref().is_none_or(|(t, _)| f.0 > *t) {
                newest = Some(f);
            }
        }
    }
    newest
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates topics (name, partitions) and waits until they are usable.
pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = block_on(admin.create_topics(&new, &AdminOptions::new()));
    for r in rt.expect("create topics") {
        if let Err((name, e)) = r {
            panic!("cannot create topic {name}: {e}");
        }
    }
}

/// A minimal executor for the admin client's futures.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

/// The topics of one test run.
pub struct Topics {
    pub metrics: String,
    pub logs: String,
    pub spans: String,
    pub alerts: String,
    pub dlq: String,
    /// Dispatch state, one partition per alerts partition.
    pub nflog: String,
    pub silences: String,
}

impl Topics {
    /// Fresh telemetry topics (4 partitions each), alerts (4) and dlq (1).
    pub fn create(brokers: &str) -> Topics {
        let t = Topics::names();
        create_topics(brokers, &t.layout());
        t
    }

    /// Fresh topic names, not created. For brokers without the CreateTopics
    /// API (librdkafka's MockCluster: create each of [`Topics::layout`]
    /// with `MockCluster::create_topic`).
    pub fn names() -> Topics {
        let id = unique("t");
        Topics {
            metrics: format!("{id}.metrics"),
            logs: format!("{id}.logs"),
            spans: format!("{id}.spans"),
            alerts: format!("{id}.alerts"),
            dlq: format!("{id}.dlq"),
            nflog: format!("{id}.nflog"),
            silences: format!("{id}.silences"),
        }
    }

    /// Every topic with its partition count.
    pub fn layout(&self) -> [(&str, i32); 7] {
        [
            (&self.metrics, 4),
            (&self.logs, 4),
            (&self.spans, 4),
            (&self.alerts, 4),
            (&self.dlq, 1),
            (&self.nflog, 4),
            (&self.silences, 1),
        ]
    }

    /// The telemetry topics `klaxon run` consumes.
    pub fn telemetry(&self) -> [&str; 3] {
        [&self.metrics, &self.logs, &self.spans]
    }
}

/// Options of one `klaxon run` config.
pub struct RunSpec<'a> {
    pub brokers: &'a str,
    pub topics: &'a Topics,
    pub group: &'a str,
    pub rules: &'a Path,
    pub http_port: u16,
    pub idle_timeout: &'a str,
    pub max_event_bytes: usize,
    /// Extra librdkafka properties.
    pub properties: &'a [(&'a str, &'a str)],
}

/// Writes a config file for `spec` into a fresh temp folder; returns its path.
pub fn write_config(spec: &RunSpec<'_>) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("klaxon-cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut props = String::new();
    for (k, v) in spec.properties {
        props.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    if props.is_empty() {
        props.push_str("    client.id: klaxon-test\n");
    }
    let text = format!(
        "kafka:\n  brokers: \"{b}\"\n  group_id: {g}\n  topics: [{m}, {l}, {s}]\n  alerts_topic: {a}\n  dlq_topic: {d}\n  properties:\n{props}\
         rules: {r}\nhttp:\n  listen: 127.0.0.1:{port}\nwindows:\n  lateness: 30s\n  idle_timeout: {idle}\n\
         max_event_bytes: {max}\n\
         dispatch:\n  nflog_topic: {nf}\n  silences_topic: {si}\n",
        b = spec.brokers,
        g = spec.group,
        m = spec.topics.metrics,
        l = spec.topics.logs,
        s = spec.topics.spans,
        a = spec.topics.alerts,
        d = spec.topics.dlq,
        r = spec.rules.display(),
        port = spec.http_port,
        idle = spec.idle_timeout,
        max = spec.max_event_bytes,
        nf = spec.topics.nflog,
        si = spec.topics.silences,
    );
    let path = dir.join("klaxon.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `klaxon run` with `config`; stderr goes to a log file.
pub fn spawn_run(config: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Member {
    let log = config.with_extension(format!("{}.log", unique("run")));
    let mut cmd = Command::new(klaxon_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KLAXON_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Member {
        child: cmd.spawn().expect("start klaxon run"),
        log,
    }
}

/// A running `klaxon run`.
pub struct Member {
    pub child: Child,
    pub log: PathBuf,
}

impl Member {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) -> String {
        unsafe_kill(self.child.id(), "TERM");
        let status = wait_timeout(&mut self.child, Duration::from_secs(60));
        let log = self.log_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "klaxon run did not stop cleanly: {status:?}\n{log}"
        );
        log
    }

    /// SIGKILL: no commit, no leave.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        let _ = self.child.wait();
        self.log_text()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> (Option<std::process::ExitStatus>, String) {
        let s = wait_timeout(&mut self.child, timeout);
        if s.is_none() {
            let _ = self.child.kill();
        }
        (s, self.log_text())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn wait_timeout(c: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `klaxon produce` of `lines` into the test's topics.
pub fn produce(brokers: &str, topics: &Topics, lines: &[String]) {
    produce_with(brokers, topics, lines, &[]);
}

/// [`produce`], with extra `klaxon produce` arguments.
pub fn produce_with(brokers: &str, topics: &Topics, lines: &[String], extra: &[String]) {
    let dir = std::env::temp_dir().join(unique("klaxon-in"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(klaxon_bin())
        .args(["produce", "--brokers", brokers, "--input"])
        .arg(&file)
        .args(["--metrics-topic", &topics.metrics])
        .args(["--logs-topic", &topics.logs])
        .args(["--spans-topic", &topics.spans])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A message read back: key, payload, headers.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub key: Option<String>,
    pub payload: String,
    pub headers: BTreeMap<String, String>,
}

/// Reads every message of `topic` from the beginning until none arrives
/// for `quiet`.
pub fn read_all(brokers: &str, topic: &str, quiet: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            last = Instant::now();
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    headers.insert(
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Record {
                partition: m.partition(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers,
            });
        }
    }
    out
}

/// Polls `read` until `done` holds or `timeout` passes; returns the last read.
pub fn wait_for<T>(timeout: Duration, mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let end = Instant::now() + timeout;
    loop {
        let v = read();
        if done(&v) || Instant::now() >= end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An HTTP/1.1 request with headers and a JSON body; returns (status, body).
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    use std::io::Write;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A plain HTTP/1.1 request to 127.0.0.1:`port`; returns (status, body).
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    use std::io::Write;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The sum of a metric's samples (all label sets) from `/metrics`.
pub fn metric(port: u16, name: &str) -> f64 {
    let Some((_, body)) = http(port, "GET", "/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The CloudMart example telemetry, as lines.
pub fn cloudmart_lines() -> Vec<String> {
    std::fs::read_to_string(workspace().join("examples/cloudmart.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What `klaxon replay` prints for `lines`, as JSON values, leaving out the
/// changes only its end-of-input flush makes (periods a watermark at the
/// last event time has not closed), which a running consumer never makes.
pub fn replay_expected(lines: &[String]) -> Vec<serde_json::Value> {
    let dir = std::env::temp_dir().join(unique("klaxon-replay"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(klaxon_bin())
        .args(["replay", "--rules"])
        .arg(workspace().join("rules/cloudmart"))
        .arg("--input")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let last = lines
        .iter()
        .filter_map(|l| {
            klaxon::decode::Decoder::decode(&klaxon::decode::JsonDecoder, l.as_bytes())
                .ok()
                .map(|e| e.time())
        })
        .max()
        .unwrap();
    let lateness = 30_000;
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| {
            let end =
                klaxon::decode::time::parse_rfc3339(v["period_end"].as_str().unwrap()).unwrap();
            // Closed by the watermark iff last > end + lateness (see Cursor::pop_due).
            last > end + lateness
        })
        .collect()
}

/// The ids of state changes in alert records, deduplicated, sorted.
pub fn ids(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The sum of a metric's samples whose labels contain `label` (e.g.
/// `result="failure"`), from `/metrics`.
pub fn metric_with(port: u16, name: &str, label: &str) -> f64 {
    let Some((_, body)) = http(port, "GET", "/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('{'))
                .and_then(|rest| rest.split_once('}'))
                .is_some_and(|(labels, _)| labels.split(',').any(|kv| kv == label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The first and the second half of `lines`, by line order ("mid-stream").
pub fn halves(lines: &[String]) -> (Vec<String>, Vec<String>) {
    let (a, b) = lines.split_at(lines.len() / 2);
    (a.to_vec(), b.to_vec())
}

/// The ids of expected state changes (from [`replay_expected`]), sorted.
pub fn expected_ids(expected: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = expected
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// How many alert records repeat an id already seen (at-least-once).
pub fn duplicates(records: &[Record]) -> usize {
    records.len() - ids(records).len()
}

/// Asserts that the alert records hold exactly the `want` ids (sorted,
/// deduplicated): nothing missing, nothing unexpected. `context` is printed
/// on failure (member logs).
pub fn assert_same_ids(records: &[Record], want: &[String], context: impl FnOnce() -> String) {
    let got = ids(records);
    let missing: Vec<&String> = want
        .iter()
        .filter(|i| got.binary_search(i).is_err())
        .collect();
    let unexpected: Vec<&String> = got
        .iter()
        .filter(|i| want.binary_search(i).is_err())
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        return;
    }
    let described: Vec<String> = records
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .filter(|v| unexpected.iter().any(|u| v["id"] == u.as_str()))
        .map(|v| {
            format!(
                "{} {}: {} -> {}",
                v["id"].as_str().unwrap_or(""),
                v["rule"].as_str().unwrap_or(""),
                v["previous"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    panic!(
        "alerts topic: {} ids, expected {}; missing {}: {missing:?}; unexpected {}: {described:#?}\n{}",
        got.len(),
        want.len(),
        missing.len(),
        unexpected.len(),
        context(),
    );
}

/// The ids on the alerts topic now (deduplicated, sorted), with a short
/// quiet time: for polling with [`wait_for`].
pub fn alert_ids(brokers: &str, topics: &Topics) -> Vec<String> {
    ids(&read_all(
        brokers,
        &topics.alerts,
        Duration::from_millis(1500),
    ))
}

/// A committed offset of a consumer group.
#[derive(Debug, Clone)]
pub struct Committed {
    pub topic: String,
    pub partition: i32,
    /// `None`: nothing committed.
    pub offset: Option<i64>,
    pub metadata: String,
}

impl Committed {
    /// The watermark klaxon keeps in the commit metadata (`klaxon/1 wm=…`).
    pub fn watermark(&self) -> Option<i64> {
        self.metadata.strip_prefix("klaxon/1 wm=")?.parse().ok()
    }
}

/// The offsets `group` has committed for every partition of `topics`
/// (an OffsetFetch; this does not join the group).
pub fn committed(brokers: &str, group: &str, topics: &[&str]) -> Vec<Committed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), Duration::from_secs(10))
            .unwrap();
        for p in 0..md.topics()[0].partitions().len() as i32 {
            tpl.add_partition(t, p);
        }
    }
    let Ok(c) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
        return Vec::new();
    };
    c.elements()
        .iter()
        .map(|e| Committed {
            topic: e.topic().to_string(),
            partition: e.partition(),
            offset: e.offset().to_raw().filter(|o| *o >= 0),
            metadata: e.metadata().to_string(),
        })
        .collect()
}

/// The latest event time (ms) among `lines`.
pub fn last_event_time(lines: &[String]) -> i64 {
    lines
        .iter()
        .filter_map(|l| {
            klaxon::decode::Decoder::decode(&klaxon::decode::JsonDecoder, l.as_bytes())
                .ok()
                .map(|e| e.time())
        })
        .max()
        .unwrap()
}

/// A broker behaviour that breaks an exact hand-over, found by [`broker_quirks`].
#[derive(Debug, Clone)]
pub enum Quirk {
    /// A fetch from an offset inside a record batch returns nothing (tansu
    /// 0.6): worked around by producing single-record batches.
    ResumeInsideBatch(String),
    /// OffsetFetch returns no commit metadata (tansu 0.6): worked around by
    /// `kafka.checkpoints_topic`.
    DropsCommitMetadata(String),
}

/// What the broker under test gets wrong that a consumer-group handover
/// depends on (empty: nothing found). Two checks on a fresh one-partition
/// topic: a fetch from an offset inside a record batch must return the
/// rest of that batch, and a committed offset's metadata must come back
/// from OffsetFetch (klaxon keeps its watermark there).
pub fn broker_quirks(broker: &TestBroker) -> Vec<Quirk> {
    use rdkafka::consumer::CommitMode;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let brokers = &broker.bootstrap;
    let topic = unique("quirks");
    broker.create_topics(&[(&topic, 1)]);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "200")
        .create()
        .unwrap();
    for i in 0..10 {
        p.send(BaseRecord::<str, str>::to(&topic).payload(&format!("m{i}")))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let group = unique("quirks");
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(5))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && got.len() < 5 {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            got.push(m.offset());
        }
    }
    let mut quirks = Vec::new();
    if got.first() != Some(&5) {
        quirks.push(Quirk::ResumeInsideBatch(format!(
            "a fetch from offset 5 of a 10-message record batch returned offsets {got:?}, not 5..=9: \
             a member that resumes at a committed offset inside a batch skips the rest of that batch"
        )));
    }
    tpl.find_partition(&topic, 0)
        .unwrap()
        .set_metadata("klaxon/1 wm=123");
    c.commit(&tpl, CommitMode::Sync).unwrap();
    let back = committed(brokers, &group, &[&topic]);
    let meta = back.first().map(|c| c.metadata.clone()).unwrap_or_default();
    if meta != "klaxon/1 wm=123" {
        quirks.push(Quirk::DropsCommitMetadata(format!(
            "commit metadata does not round-trip (committed \"klaxon/1 wm=123\", OffsetFetch returned {meta:?}): \
             the next owner cannot tell which periods were published and publishes again from the commit point"
        )));
    }
    quirks
}

/// The broker of a test: a Kafka-compatible broker over TCP
/// (`KLAXON_TEST_BROKERS=host:port`), or librdkafka's MockCluster inside
/// the test process (`KLAXON_TEST_BROKERS=mock`, or [`TestBroker::mock`]),
/// which listens on loopback so that `klaxon run` processes can join it.
/// The MockCluster lives as long as this value.
pub struct TestBroker {
    pub bootstrap: String,
    mock: Option<rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    /// Extra `klaxon produce` arguments, for this broker's quirks.
    pub produce_args: Vec<String>,
    /// Extra environment of `klaxon run` members, for this broker's quirks.
    pub run_env: Vec<(String, String)>,
}

impl TestBroker {
    /// The records of the checkpoints topic the members were given, one
    /// line each (for a failing test's message; empty without one).
    pub fn checkpoints_text(&self) -> String {
        let Some((_, topic)) = self
            .run_env
            .iter()
            .find(|(k, _)| k == "KLAXON_CHECKPOINTS_TOPIC")
        else {
            return String::new();
        };
        let records = read_all(&self.bootstrap, topic, Duration::from_secs(2));
        let mut out = format!("checkpoints topic {topic}: {} records\n", records.len());
        for r in records {
            out += &format!("  {} {}\n", r.key.unwrap_or_default(), r.payload);
        }
        out
    }

    /// From `KLAXON_TEST_BROKERS` (required; `mock` for a MockCluster).
    pub fn from_env() -> TestBroker {
        let b = require_brokers();
        if b == "mock" {
            TestBroker::mock()
        } else {
            TestBroker {
                bootstrap: b,
                mock: None,
                produce_args: Vec::new(),
                run_env: Vec::new(),
            }
        }
    }

    /// A fresh in-process MockCluster with one broker.
    pub fn mock() -> TestBroker {
        let mock = rdkafka::mocking::MockCluster::new(1).expect("librdkafka MockCluster");
        TestBroker {
            bootstrap: mock.bootstrap_servers(),
            mock: Some(mock),
            produce_args: Vec::new(),
            run_env: Vec::new(),
        }
    }

    /// `klaxon produce` of `lines` into `topics`, with [`Self::produce_args`].
    pub fn produce(&self, topics: &Topics, lines: &[String]) {
        produce_with(&self.bootstrap, topics, lines, &self.produce_args);
    }

    /// `klaxon run` with `config`, [`Self::run_env`] and `extra_env`.
    pub fn spawn_run(&self, config: &Path, extra_env: &[(&str, &str)]) -> Member {
        let mut env: Vec<(&str, &str)> = self
            .run_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra_env);
        spawn_run(config, &env, &[])
    }

    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// Creates topics: with the admin API over TCP; MockCluster does not
    /// implement CreateTopics (the request times out), so with its own call.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        match &self.mock {
            Some(m) => {
                for (t, p) in topics {
                    m.create_topic(t, *p, 1)
                        .unwrap_or_else(|e| panic!("mock: cannot create {t}: {e}"));
                }
            }
            None => create_topics(&self.bootstrap, topics),
        }
    }

    /// Fresh topics for one test run (see [`Topics::layout`]).
    pub fn topics(&self) -> Topics {
        let t = Topics::names();
        self.create_topics(&t.layout());
        t
    }
}

/// The partitions of the telemetry topics that hold at least one message.
pub fn partitions_with_data(brokers: &str, topics: &Topics) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = topics
        .telemetry()
        .iter()
        .flat_map(|t| {
            read_all(brokers, t, Duration::from_secs(1))
                .into_iter()
                .map(|r| (t.to_string(), r.partition))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Waits (up to `timeout`) until `group` has committed an offset past the
/// start of each of `parts`: the members' watermarks have moved and the
/// commit points with them, so a handover after this resumes mid-stream.
/// Returns the partitions still at the start (empty: done).
pub fn wait_committed_past_start(
    brokers: &str,
    group: &str,
    topics: &Topics,
    parts: &[(String, i32)],
    timeout: Duration,
) -> Vec<(String, i32)> {
    wait_for(
        timeout,
        || {
            let c = committed(brokers, group, &topics.telemetry());
            parts
                .iter()
                .filter(|(t, p)| {
                    !c.iter().any(|c| {
                        &c.topic == t && c.partition == *p && c.offset.is_some_and(|o| o > 0)
                    })
                })
                .cloned()
                .collect::<Vec<_>>()
        },
        |left| left.is_empty(),
    )
}

/// A broker for the hand-over tests: the configured one, with a
/// workaround for each of its [`broker_quirks`] (on tansu 0.6, both):
/// telemetry is produced in single-record batches, so every committed
/// offset starts a batch, and members write their watermarks to a
/// checkpoints topic (`KLAXON_CHECKPOINTS_TOPIC`), since the commit
/// metadata is lost.
pub fn handover_broker() -> TestBroker {
    let mut broker = TestBroker::from_env();
    for q in broker_quirks(&broker) {
        eprintln!("broker quirk, worked around: {q:?}");
        match q {
            Quirk::ResumeInsideBatch(_) => broker
                .produce_args
                .extend(["-X".to_string(), "batch.num.messages=1".to_string()]),
            Quirk::DropsCommitMetadata(_) => {
                let topic = unique("checkpoints");
                broker.create_topics(&[(&topic, 1)]);
                broker
                    .run_env
                    .push(("KLAXON_CHECKPOINTS_TOPIC".to_string(), topic));
            }
        }
    }
    broker
}

/// The idle timeout of the hand-over tests' members. They produce the
/// events after the members have joined, all at once, hours of event time
/// in a second: a partition that went idle before its first events were
/// fetched lets the other partitions carry time past all of them, and they
/// come late (seen once in CI with 2 s, on MockCluster under load). 5 s is
/// well above how long `klaxon produce` takes to reach every partition.
pub const HANDOVER_IDLE: &str = "5s";

/// The sum of a metric over one member's `/metrics`.
pub fn assigned(port: u16) -> f64 {
    metric(port, "klaxon_partitions_assigned")
}

/// Events a member has read.
pub fn consumed(port: u16) -> f64 {
    metric(port, "klaxon_events_consumed_total")
}

/// Two members of one group, with their HTTP ports.
pub struct Pair {
    pub a: Member,
    pub b: Member,
    pub pa: u16,
    pub pb: u16,
    /// Events of the first half each member read.
    pub ca: f64,
    pub cb: f64,
}

impl Pair {
    pub fn logs(&self) -> String {
        format!(
            "--- A ---\n{}\n--- B ---\n{}",
            self.a.log_text(),
            self.b.log_text()
        )
    }
}

/// Starts two members of `group` on the CloudMart rules, waits until they
/// have split the 12 partitions, produces `first`, and waits until both
/// have read it and every partition with data has a commit past its start:
/// a hand-over from here happens mid-stream.
pub fn two_members_mid_stream(
    broker: &TestBroker,
    topics: &Topics,
    group: &str,
    properties: &[(&str, &str)],
    first: &[String],
    started: Instant,
) -> Pair {
    let brokers = broker.bootstrap.as_str();
    let rules = workspace().join("rules/cloudmart");
    let config = |port| {
        write_config(&RunSpec {
            brokers,
            topics,
            group,
            rules: &rules,
            http_port: port,
            idle_timeout: HANDOVER_IDLE,
            max_event_bytes: 65536,
            properties,
        })
    };
    let (pa, pb) = (free_port(), free_port());
    let mut pair = Pair {
        a: broker.spawn_run(&config(pa), &[]),
        b: broker.spawn_run(&config(pb), &[]),
        pa,
        pb,
        ca: 0.0,
        cb: 0.0,
    };

    // Both members own partitions, and together all of them.
    let (na, nb) = wait_for(
        Duration::from_secs(90),
        || (assigned(pa), assigned(pb)),
        |(x, y)| *x > 0.0 && *y > 0.0 && x + y == 12.0,
    );
    assert!(
        na > 0.0 && nb > 0.0 && na + nb == 12.0,
        "split {na}+{nb}\n{}",
        pair.logs()
    );
    eprintln!(
        "split: A {na}, B {nb} partitions ({:.1?})",
        started.elapsed()
    );

    broker.produce(topics, first);
    let n = first.len() as f64;
    let (ca, cb) = wait_for(
        Duration::from_secs(90),
        || (consumed(pa), consumed(pb)),
        |(x, y)| x + y == n,
    );
    assert_eq!(
        ca + cb,
        n,
        "both members read the first half\n{}",
        pair.logs()
    );
    assert!(cb > 0.0, "B read part of the first half (A {ca}, B {cb})");
    let parts = partitions_with_data(brokers, topics);
    let left = wait_committed_past_start(brokers, group, topics, &parts, Duration::from_secs(90));
    assert!(
        left.is_empty(),
        "no commit past the start of {left:?}\n{}",
        pair.logs()
    );
    eprintln!(
        "first half read (A {ca}, B {cb} events) and committed mid-stream ({:.1?})",
        started.elapsed()
    );
    (pair.ca, pair.cb) = (ca, cb);
    pair
}
