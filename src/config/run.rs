//! The `klaxon run` configuration file (see `deploy/klaxon.yaml`).
//!
//! Values come from the file, then from `KLAXON_*` environment variables,
//! which win. Secrets never live in the file: a librdkafka property may be
//! `{ env: NAME }` or `{ file: PATH }`, and [`Secret`] keeps the value out
//! of `Debug` output and logs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::duration::parse_duration;
use super::yaml::{Node, Pos, Value};
use super::{read_yaml, ConfigError, ErrorKind, Fields};
use crate::model::Millis;

/// A value that must not be printed: `Debug` shows `"***"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A librdkafka property value as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropValue {
    Plain(String),
    /// Read from the environment or a file; never logged.
    Secret(Secret),
}

impl PropValue {
    pub fn expose(&self) -> &str {
        match self {
            PropValue::Plain(s) => s,
            PropValue::Secret(s) => s.expose(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    /// `group.instance.id`: static membership (e.g. the pod name).
    pub instance_id: Option<String>,
    pub topics: Vec<String>,
    pub alerts_topic: String,
    pub dlq_topic: String,
    /// Where each commit's watermark is also written, for brokers that
    /// drop OffsetCommit metadata (tansu 0.6). `None`: the metadata alone.
    pub checkpoints_topic: Option<String>,
    pub properties: BTreeMap<String, PropValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The file it was read from (relative paths resolve against its folder).
    pub file: PathBuf,
    pub kafka: KafkaConfig,
    pub rules: Vec<PathBuf>,
    pub http_listen: SocketAddr,
    pub lateness: Millis,
    pub idle_timeout: Millis,
    pub max_event_bytes: usize,
    /// Threads that decode and aggregate (0: one per core).
    pub workers: usize,
    pub dispatch: DispatchRun,
    /// `http.token`: the bearer token that the dispatch API's writes need
    /// (`None`: writes are refused).
    pub api_token: Option<Secret>,
    /// `http.slack_signing_secret`: verifies Slack's interaction requests
    /// (the Acknowledge button); `None`: the endpoint is not served.
    pub slack_signing_secret: Option<Secret>,
    /// The notification channels team files name (`receivers:`).
    pub receivers: super::receivers::ReceiversConfig,
}

/// The `dispatch:` section: the stage of `klaxon run` that reads the
/// alerts topic and sends notifications.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchRun {
    /// Off: `klaxon run` only publishes state changes (dispatch runs
    /// elsewhere, or not at all).
    pub enabled: bool,
    /// The consumer group on the alerts topic (default `<group_id>-dispatch`).
    pub group_id: String,
    /// Compacted, with as many partitions as the alerts topic: partition p
    /// holds the dispatch state of alerts partition p.
    pub nflog_topic: String,
    /// Compacted; every member reads all of it.
    pub silences_topic: String,
    /// How many accepted notifications each partition keeps for
    /// `GET /api/v1/notifications`.
    pub history: usize,
    /// Every accepted notification is also appended here as a JSON line.
    pub outbox: Option<PathBuf>,
}

pub const DEFAULT_NFLOG_TOPIC: &str = "klaxon.nflog";
pub const DEFAULT_SILENCES_TOPIC: &str = "klaxon.silences";
pub const DEFAULT_HISTORY: usize = 200;

pub const DEFAULT_ALERTS_TOPIC: &str = "klaxon.alerts";
pub const DEFAULT_DLQ_TOPIC: &str = "klaxon.dlq";
pub const DEFAULT_IDLE_TIMEOUT: Millis = 30_000;
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9464";

/// An environment to read overrides and secrets from (the process's own, or
/// a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// Secrets are checked for their form (`{ env: NAME }`, `{ file: PATH }`)
    /// but not read (`klaxon check --config`, where they are not at hand).
    fn offline(&self) -> bool {
        false
    }
}

/// The process environment, with secrets left unread.
pub struct OfflineEnv;

impl Env for OfflineEnv {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnv.var(name)
    }

    fn offline(&self) -> bool {
        true
    }
}

/// What an unread secret holds (see [`Env::offline`]).
pub const UNREAD_SECRET: &str = "(not read offline)";

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

const TOP: &[&str] = &[
    "kafka",
    "rules",
    "http",
    "windows",
    "max_event_bytes",
    "workers",
    "dispatch",
    "receivers",
];
const KAFKA: &[&str] = &[
    "brokers",
    "group_id",
    "instance_id",
    "topics",
    "alerts_topic",
    "dlq_topic",
    "checkpoints_topic",
    "properties",
];

/// Reads the config file, then applies the `KLAXON_*` overrides of `env`.
pub fn load(path: &Path, env: &dyn Env) -> Result<RunConfig, ConfigError> {
    let doc = read_yaml(path)?;
    parse(path, &doc, env)
}

fn schema(file: &Path, pos: Pos, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Schema, file, pos, msg)
}

fn strings(file: &Path, n: &Node, what: &str) -> Result<Vec<String>, ConfigError> {
    match &n.value {
        Value::Scalar { text, .. } => Ok(vec![text.clone()]),
        Value::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| schema(file, i.pos, format!("{what} must be strings")))
            })
            .collect(),
        Value::Map(_) => Err(schema(file, n.pos, format!("{what} must be a list"))),
    }
}

fn parse(file: &Path, doc: &Node, env: &dyn Env) -> Result<RunConfig, ConfigError> {
    let top = Fields::new(file, doc, "the klaxon config", TOP)?;
    let base = file.parent().unwrap_or(Path::new("."));

    let k = Fields::new(
        file,
        top.required("kafka", "the klaxon config")?,
        "`kafka`",
        KAFKA,
    )?;
    let opt = |key: &str| -> Result<Option<String>, ConfigError> {
        Ok(k.str(key, "`kafka`")?.map(|(s, _)| s.to_string()))
    };
    let topics = match k.get("topics") {
        Some(n) => strings(file, n, "`kafka.topics`")?,
        None => Vec::new(),
    };
    let mut properties = BTreeMap::new();
    if let Some(n) = k.get("properties") {
        let map = n
            .as_map()
            .ok_or_else(|| schema(file, n.pos, "`kafka.properties` must be a mapping"))?;
        for (key, v) in map {
            let name = key
                .as_str()
                .ok_or_else(|| schema(file, key.pos, "property names must be strings"))?;
            properties.insert(name.to_string(), prop_value(file, name, v, env)?);
        }
    }
    let mut kafka = KafkaConfig {
        brokers: opt("brokers")?.unwrap_or_default(),
        group_id: opt("group_id")?.unwrap_or_else(|| "klaxon".into()),
        instance_id: opt("instance_id")?,
        topics,
        alerts_topic: opt("alerts_topic")?.unwrap_or_else(|| DEFAULT_ALERTS_TOPIC.into()),
        dlq_topic: opt("dlq_topic")?.unwrap_or_else(|| DEFAULT_DLQ_TOPIC.into()),
        checkpoints_topic: opt("checkpoints_topic")?,
        properties,
    };

    let mut rules = match top.get("rules") {
        Some(n) => strings(file, n, "`rules`")?
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        None => Vec::new(),
    };

    let mut http_listen = DEFAULT_HTTP_LISTEN.to_string();
    let mut http_pos = doc.pos;
    let mut api_token = None;
    let mut slack_signing_secret = None;
    if let Some(n) = top.get("http") {
        let h = Fields::new(
            file,
            n,
            "`http`",
            &["listen", "token", "slack_signing_secret"],
        )?;
        if let Some((s, n)) = h.str("listen", "`http`")? {
            http_listen = s.to_string();
            http_pos = n.pos;
        }
        if let Some(n) = h.get("slack_signing_secret") {
            slack_signing_secret = Some(secret_ref(file, "`http.slack_signing_secret`", n, env)?);
        }
        if let Some(n) = h.get("token") {
            api_token = Some(secret_ref(file, "`http.token`", n, env)?);
        }
    }

    let (mut lateness, mut idle_timeout) =
        (crate::config::rules::DEFAULT_LATENESS, DEFAULT_IDLE_TIMEOUT);
    if let Some(n) = top.get("windows") {
        let w = Fields::new(file, n, "`windows`", &["lateness", "idle_timeout"])?;
        for (key, slot) in [
            ("lateness", &mut lateness),
            ("idle_timeout", &mut idle_timeout),
        ] {
            if let Some((s, n)) = w.str(key, "`windows`")? {
                *slot =
                    parse_duration(s).map_err(|e| schema(file, n.pos, format!("`{key}`: {e}")))?;
            }
        }
    }

    let max_event_bytes = match top.str("max_event_bytes", "the klaxon config")? {
        None => DEFAULT_MAX_EVENT_BYTES,
        Some((s, n)) => s.parse::<usize>().ok().filter(|v| *v > 0).ok_or_else(|| {
            schema(
                file,
                n.pos,
                "`max_event_bytes` must be a positive number of bytes",
            )
        })?,
    };

    let workers = match top.str("workers", "the klaxon config")? {
        None => 0,
        Some((s, n)) => s.parse::<usize>().map_err(|_| {
            schema(
                file,
                n.pos,
                "`workers` must be a number of threads (0: one per core)",
            )
        })?,
    };

    let mut dispatch = DispatchRun {
        enabled: true,
        group_id: String::new(),
        nflog_topic: DEFAULT_NFLOG_TOPIC.into(),
        silences_topic: DEFAULT_SILENCES_TOPIC.into(),
        history: DEFAULT_HISTORY,
        outbox: None,
    };
    if let Some(n) = top.get("dispatch") {
        let d = Fields::new(
            file,
            n,
            "`dispatch`",
            &[
                "enabled",
                "group_id",
                "nflog_topic",
                "silences_topic",
                "history",
                "outbox",
            ],
        )?;
        if let Some((s, n)) = d.str("enabled", "`dispatch`")? {
            dispatch.enabled = match s {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(schema(
                        file,
                        n.pos,
                        "`dispatch.enabled` must be true or false",
                    ))
                }
            };
        }
        if let Some((s, _)) = d.str("group_id", "`dispatch`")? {
            dispatch.group_id = s.to_string();
        }
        if let Some((s, _)) = d.str("nflog_topic", "`dispatch`")? {
            dispatch.nflog_topic = s.to_string();
        }
        if let Some((s, _)) = d.str("silences_topic", "`dispatch`")? {
            dispatch.silences_topic = s.to_string();
        }
        if let Some((s, n)) = d.str("history", "`dispatch`")? {
            dispatch.history = s.parse().map_err(|_| {
                schema(
                    file,
                    n.pos,
                    "`dispatch.history` must be a number of notifications",
                )
            })?;
        }
        if let Some((s, _)) = d.str("outbox", "`dispatch`")? {
            let p = PathBuf::from(s);
            dispatch.outbox = Some(if p.is_relative() { base.join(p) } else { p });
        }
    }
    let receivers = match top.get("receivers") {
        Some(n) => super::receivers::parse_receivers(file, n, env)?,
        None => Default::default(),
    };

    // Environment overrides win over the file.
    if let Some(v) = env.var("KLAXON_BROKERS") {
        kafka.brokers = v;
    }
    if let Some(v) = env.var("KLAXON_GROUP_ID") {
        kafka.group_id = v;
    }
    if let Some(v) = env.var("KLAXON_INSTANCE_ID") {
        kafka.instance_id = Some(v);
    }
    if let Some(v) = env.var("KLAXON_TOPICS") {
        kafka.topics = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    if let Some(v) = env.var("KLAXON_ALERTS_TOPIC") {
        kafka.alerts_topic = v;
    }
    if let Some(v) = env.var("KLAXON_DLQ_TOPIC") {
        kafka.dlq_topic = v;
    }
    if let Some(v) = env.var("KLAXON_CHECKPOINTS_TOPIC") {
        kafka.checkpoints_topic = Some(v);
    }
    let rules_from_env = env.var("KLAXON_RULES");
    if let Some(v) = &rules_from_env {
        rules = v.split(',').map(PathBuf::from).collect();
    }
    if let Some(v) = env.var("KLAXON_HTTP_LISTEN") {
        http_listen = v;
    }
    if let Some(v) = env.var("KLAXON_DISPATCH") {
        dispatch.enabled = v != "false" && v != "0";
    }
    if dispatch.group_id.is_empty() {
        dispatch.group_id = format!("{}-dispatch", kafka.group_id);
    }
    if let Some(v) = env.var("KLAXON_API_TOKEN") {
        api_token = Some(Secret::new(v));
    }
    if let Some(v) = env.var("KLAXON_SLACK_SIGNING_SECRET") {
        slack_signing_secret = Some(Secret::new(v));
    }
    if rules_from_env.is_none() {
        rules = rules
            .into_iter()
            .map(|p| if p.is_relative() { base.join(p) } else { p })
            .collect();
    }

    let at = |pos| schema(file, pos, "");
    if kafka.brokers.is_empty() {
        return Err(with(
            at(doc.pos),
            "`kafka.brokers` is not set (in the file or KLAXON_BROKERS)",
        ));
    }
    if kafka.topics.is_empty() {
        return Err(with(at(doc.pos), "`kafka.topics` names no telemetry topic"));
    }
    if rules.is_empty() {
        return Err(with(at(doc.pos), "`rules` names no rule file or folder"));
    }
    let http_listen = http_listen.parse().map_err(|_| {
        with(
            at(http_pos),
            &format!("`http.listen` must be an address like 127.0.0.1:9464, not {http_listen:?}"),
        )
    })?;
    Ok(RunConfig {
        file: file.to_path_buf(),
        kafka,
        rules,
        http_listen,
        lateness,
        idle_timeout,
        max_event_bytes,
        workers,
        dispatch,
        api_token,
        slack_signing_secret,
        receivers,
    })
}

fn with(mut e: ConfigError, msg: &str) -> ConfigError {
    e.message = msg.to_string();
    e
}

/// A secret that must not be written in the file: `{ env: NAME }` or
/// `{ file: PATH }` (e.g. `http.token`). Empty values are refused.
fn secret_ref(file: &Path, what: &str, v: &Node, env: &dyn Env) -> Result<Secret, ConfigError> {
    let Value::Map(_) = &v.value else {
        return Err(schema(
            file,
            v.pos,
            format!(
                "{what} is a secret: write `{{ env: NAME }}` or `{{ file: PATH }}`, not the value itself"
            ),
        ));
    };
    let s = secret_map(file, what, v, env)?;
    if s.expose().trim().is_empty() {
        return Err(schema(file, v.pos, format!("{what} is empty")));
    }
    Ok(s)
}

/// A property: a scalar, `{ env: NAME }` or `{ file: PATH }`.
fn prop_value(file: &Path, name: &str, v: &Node, env: &dyn Env) -> Result<PropValue, ConfigError> {
    match &v.value {
        Value::Scalar { text, .. } => Ok(PropValue::Plain(text.clone())),
        Value::Map(_) => {
            secret_map(file, &format!("property `{name}`"), v, env).map(PropValue::Secret)
        }
        Value::Seq(_) => Err(schema(
            file,
            v.pos,
            format!("property `{name}` must be a string"),
        )),
    }
}

/// `{ env: NAME }` or `{ file: PATH }` → the secret; `what` names the key
/// in messages (``property `sasl.password` ``, `` `http.token` ``).
fn secret_map(file: &Path, what: &str, v: &Node, env: &dyn Env) -> Result<Secret, ConfigError> {
    let f = Fields::new(file, v, what, &["env", "file"])?;
    if env.offline() && (f.str("env", what)?.is_some() || f.str("file", what)?.is_some()) {
        return Ok(Secret::new(UNREAD_SECRET));
    }
    if let Some((var, n)) = f.str("env", what)? {
        let value = env.var(var).ok_or_else(|| {
            schema(
                file,
                n.pos,
                format!("{what}: environment variable {var} is not set"),
            )
        })?;
        return Ok(Secret::new(value));
    }
    if let Some((path, n)) = f.str("file", what)? {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ErrorKind::Io,
                file,
                n.pos,
                format!("{what}: cannot read {path}: {e}"),
            )
        })?;
        return Ok(Secret::new(text.trim_end_matches(['\n', '\r'])));
    }
    Err(schema(
        file,
        v.pos,
        format!("{what} needs `env:` or `file:`"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<RunConfig, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let doc = yaml::parse(text).unwrap();
        parse(Path::new("/etc/klaxon/klaxon.yaml"), &doc, &env)
    }

    const MIN: &str = "kafka:\n  brokers: b:9092\n  topics: [t]\nrules: rules\n";

    #[test]
    fn defaults_and_relative_rules() {
        let c = load_str(MIN, &[]).unwrap();
        assert_eq!(c.kafka.group_id, "klaxon");
        assert_eq!(c.kafka.alerts_topic, "klaxon.alerts");
        assert_eq!(c.kafka.dlq_topic, "klaxon.dlq");
        assert_eq!(c.kafka.checkpoints_topic, None);
        assert_eq!(c.rules, vec![PathBuf::from("/etc/klaxon/rules")]);
        assert_eq!(c.idle_timeout, 30_000);
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:9464");
    }

    #[test]
    fn environment_wins() {
        let c = load_str(
            MIN,
            &[
                ("KLAXON_BROKERS", "k1:9092,k2:9092"),
                ("KLAXON_TOPICS", "a, b"),
                ("KLAXON_INSTANCE_ID", "pod-0"),
                ("KLAXON_RULES", "/r"),
                ("KLAXON_HTTP_LISTEN", "0.0.0.0:1"),
                ("KLAXON_CHECKPOINTS_TOPIC", "klaxon.checkpoints"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.kafka.checkpoints_topic.as_deref(),
            Some("klaxon.checkpoints")
        );
        assert_eq!(c.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(c.kafka.topics, vec!["a", "b"]);
        assert_eq!(c.kafka.instance_id.as_deref(), Some("pod-0"));
        assert_eq!(c.rules, vec![PathBuf::from("/r")]);
        assert_eq!(c.http_listen.port(), 1);
    }

    #[test]
    fn offline_secrets_are_checked_for_form_but_not_read() {
        let text = MIN.to_string().replace(
            "  topics: [t]\n",
            "  topics: [t]\n  properties:\n    sasl.password: { env: UNSET_9f2 }\n    ssl.key.password: { file: /nonexistent/pw }\n",
        ) + "http:\n  token: { file: /nonexistent/token }\n";
        let doc = yaml::parse(&text).unwrap();
        let file = Path::new("/etc/klaxon/klaxon.yaml");
        // Online, the unset variable is an error.
        assert!(parse(file, &doc, &BTreeMap::new()).is_err());
        let c = parse(file, &doc, &OfflineEnv).unwrap();
        assert_eq!(c.kafka.properties["sasl.password"].expose(), UNREAD_SECRET);
        assert_eq!(c.api_token.as_ref().unwrap().expose(), UNREAD_SECRET);
        // A secret written as a literal is still refused.
        let bad = MIN.to_string() + "http:\n  token: hunter2\n";
        let e = parse(file, &yaml::parse(&bad).unwrap(), &OfflineEnv).unwrap_err();
        assert!(e.to_string().contains("is a secret"), "{e}");
    }

    #[test]
    fn secrets_from_env_never_debug_print() {
        let text = MIN.to_string().replace(
            "  topics: [t]\n",
            "  topics: [t]\n  properties:\n    sasl.password: { env: KP }\n    client.id: me\n",
        );
        let c = load_str(&text, &[("KP", "hunter2")]).unwrap();
        assert_eq!(c.kafka.properties["sasl.password"].expose(), "hunter2");
        assert_eq!(c.kafka.properties["client.id"].expose(), "me");
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = load_str(&text, &[]).unwrap_err();
        assert!(e.to_string().contains("KP is not set"), "{e}");
    }

    #[test]
    fn the_api_token_is_a_secret_from_env_or_file() {
        let dir = std::env::temp_dir().join(format!("klaxon-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, "from-a-file-5e2\n").unwrap();
        for (http, env, want) in [
            (
                "http:\n  token: { env: KT }\n",
                vec![("KT", "from-env-7a1")],
                Some("from-env-7a1"),
            ),
            (
                &format!("http:\n  token: {{ file: {} }}\n", token_file.display()),
                vec![],
                Some("from-a-file-5e2"),
            ),
            // KLAXON_API_TOKEN wins over the file.
            (
                "http:\n  token: { env: KT }\n",
                vec![("KT", "x"), ("KLAXON_API_TOKEN", "override-3c9")],
                Some("override-3c9"),
            ),
            (
                "",
                vec![("KLAXON_API_TOKEN", "override-3c9")],
                Some("override-3c9"),
            ),
            ("", vec![], None),
        ] {
            let c = load_str(&format!("{MIN}{http}"), &env).unwrap();
            assert_eq!(c.api_token.as_ref().map(Secret::expose), want, "{http}");
            if let Some(w) = want {
                assert!(!format!("{c:?}").contains(w), "{c:?}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        for (http, env, words) in [
            (
                "http:\n  token: hunter2\n",
                vec![],
                "6:10: `http.token` is a secret: write `{ env: NAME }`",
            ),
            (
                "http:\n  token: { env: KT }\n",
                vec![],
                "6:17: `http.token`: environment variable KT is not set",
            ),
            (
                "http:\n  token: { env: KT }\n",
                vec![("KT", " ")],
                "6:10: `http.token` is empty",
            ),
            (
                "http:\n  tokn: { env: KT }\n",
                vec![],
                "6:3: unknown field `tokn` in `http`; did you mean `token`?",
            ),
        ] {
            let e = load_str(&format!("{MIN}{http}"), &env).unwrap_err();
            assert!(e.to_string().contains(words), "{http}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn typos_are_positioned() {
        let e = load_str("kafka:\n  brokers: b\n  topic: [t]\nrules: r\n", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/klaxon/klaxon.yaml:3:3: unknown field `topic` in `kafka`; did you mean `topics`?"
        );
    }

    #[test]
    fn receivers_are_read() {
        let text = format!(
            "{MIN}receivers:\n  hook: {{ type: webhook, url: \"http://127.0.0.1:9/x\" }}\n"
        );
        let c = load_str(&text, &[]).unwrap();
        assert!(c.receivers.receivers.contains_key("hook"));
        let e = load_str(
            &format!("{MIN}receivers:\n  hook: {{ type: webhok }}\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/klaxon/klaxon.yaml:6:17: unknown receiver type `webhok`; did you mean `webhook`?"
        );
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/klaxon.yaml");
        let c = load(&path, &BTreeMap::new()).unwrap();
        assert_eq!(c.kafka.topics.len(), 3);
        assert!(c.rules[0].ends_with("rules"));
    }
}
