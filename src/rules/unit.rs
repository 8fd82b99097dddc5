//! Rule unit tests, in the spirit of `promtool test rules`.
//!
//! ```yaml
//! rule_files: [../ec2.yaml]          # relative to this file
//! tests:
//!   - name: two hot periods raise the alarm
//!     start: 2026-01-01T00:00:00Z    # default
//!     interval: 5m                   # one step per value
//!     input:
//!       - event: {kind: metric, name: CPUUtilization, namespace: AWS/EC2, labels: {InstanceId: i-1}}
//!         values: "50 85 90 _ 40"    # `_` = no event that step; `85x3` = three steps of 85
//!     expect:
//!       - {at: 15m, rule: CloudMart-EC2-HighCPU, labels: {InstanceId: i-1}, state: alarm}
//! ```
//! `values` puts one event per step, with the number in `value` (metrics),
//! `duration_ms` (spans) or the field named by `set`. `counts` puts that
//! many copies of the event in each step instead. An expectation gives the
//! state of one series once every period ending at or before `start + at`
//! has been evaluated.

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value as Json};

use crate::config::duration::{format_duration, parse_duration};
use crate::config::rules::compile_file;
use crate::config::yaml::{Node, Value};
use crate::config::{read_yaml, ConfigError, ErrorKind, Fields, RuleSet};
use crate::decode::{Decoder, JsonDecoder};
use crate::engine::{Engine, Options};
use crate::model::{format_rfc3339, AlarmState, Millis, Ordered, StateChange};

const DEFAULT_START: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// A parsed test file.
#[derive(Debug)]
pub struct TestFile {
    pub path: PathBuf,
    pub rule_files: Vec<PathBuf>,
    pub lateness: Millis,
    pub cases: Vec<Case>,
}

#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub start: Millis,
    /// The events, as JSON lines, with the line of the test file they came from.
    pub events: Vec<(Millis, String, usize)>,
    pub expect: Vec<Expect>,
}

#[derive(Debug)]
pub struct Expect {
    pub at: Millis,
    pub rule: String,
    pub labels: Ordered<String>,
    pub state: AlarmState,
    pub line: usize,
}

/// One failed expectation, printed as a readable diff.
#[derive(Debug)]
pub struct Failure {
    pub case: String,
    pub message: String,
}

/// The outcome of one file.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failures: Vec<Failure>,
}

fn err(file: &Path, n: &Node, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Schema, file, n.pos, msg)
}

impl TestFile {
    pub fn load(path: &Path) -> Result<TestFile, ConfigError> {
        let doc = read_yaml(path)?;
        let top = Fields::new(
            path,
            &doc,
            "a rule test file",
            &["rule_files", "lateness", "tests"],
        )?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let rf = top.required("rule_files", "a rule test file")?;
        let rule_files = rf
            .as_seq()
            .ok_or_else(|| top.wrong(rf, "rule_files", "a rule test file", "a list of paths"))?
            .iter()
            .map(|n| {
                n.as_str()
                    .map(|s| dir.join(s))
                    .ok_or_else(|| err(path, n, "a rule file path must be a string"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lateness = match top.str("lateness", "a rule test file")? {
            Some((s, n)) => parse_duration(s).map_err(|m| err(path, n, m))?,
            None => 0,
        };
        let tn = top.required("tests", "a rule test file")?;
        let cases = tn
            .as_seq()
            .ok_or_else(|| top.wrong(tn, "tests", "a rule test file", "a list"))?
            .iter()
            .map(|c| parse_case(path, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TestFile {
            path: path.to_path_buf(),
            rule_files,
            lateness,
            cases,
        })
    }

    fn rules(&self) -> Result<RuleSet, Vec<ConfigError>> {
        let mut set = RuleSet::default();
        for f in &self.rule_files {
            let doc = read_yaml(f).map_err(|e| vec![e])?;
            set.rules.extend(compile_file(f, &doc)?);
        }
        Ok(set)
    }

    /// Checks that the file and the rules it names are valid, and that
    /// every expectation names a rule they define.
    pub fn check(&self) -> Result<(), Vec<ConfigError>> {
        let set = self.rules()?;
        let mut errors = Vec::new();
        for c in &self.cases {
            for e in &c.expect {
                if !set.rules.iter().any(|r| r.name == e.rule) {
                    errors.push(ConfigError::new(
                        ErrorKind::Invalid,
                        &self.path,
                        crate::config::Pos {
                            line: e.line,
                            col: 1,
                        },
                        format!(
                            "test `{}` expects rule `{}`, which the rule_files do not define",
                            c.name, e.rule
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Runs every case.
    pub fn run(&self) -> Result<Report, Vec<ConfigError>> {
        self.check()?;
        let mut report = Report::default();
        for c in &self.cases {
            let set = self.rules()?;
            let mut engine = Engine::new(set, Options::with_lateness(self.lateness));
            let mut changes: Vec<StateChange> = Vec::new();
            let mut events = c.events.clone();
            events.sort_by_key(|(t, _, _)| *t);
            for (_, json, line) in &events {
                let ev = JsonDecoder.decode(json.as_bytes()).map_err(|e| {
                    vec![ConfigError::new(
                        ErrorKind::Schema,
                        &self.path,
                        crate::config::Pos {
                            line: *line,
                            col: 1,
                        },
                        format!("test `{}`: the input makes an invalid event: {e}", c.name),
                    )]
                })?;
                engine.ingest(&ev, &mut changes);
            }
            engine.flush(&mut changes);
            let mut ok = true;
            for e in &c.expect {
                let at = c.start + e.at;
                let history: Vec<&StateChange> = changes
                    .iter()
                    .filter(|ch| ch.rule == e.rule && same_labels(&ch.labels, &e.labels))
                    .collect();
                let got = history
                    .iter()
                    .rfind(|ch| ch.period_end <= at)
                    .map_or(AlarmState::InsufficientData, |ch| ch.state);
                if got != e.state {
                    ok = false;
                    let mut msg = format!(
                        "line {}: {}{} at {} ({}):\n    expected: {}\n         got: {}\n     changes:",
                        e.line,
                        e.rule,
                        show_labels(&e.labels),
                        format_duration(e.at),
                        format_rfc3339(at),
                        e.state,
                        got
                    );
                    if history.is_empty() {
                        msg.push_str(" none");
                    }
                    for ch in &history {
                        msg.push_str(&format!(
                            "\n       {} {} → {}  {}",
                            format_duration(ch.period_end - c.start),
                            ch.previous,
                            ch.state,
                            serde_json::to_string(&ch.values).unwrap_or_default()
                        ));
                    }
                    report.failures.push(Failure {
                        case: c.name.clone(),
                        message: msg,
                    });
                }
            }
            if ok {
                report.passed += 1;
            }
        }
        Ok(report)
    }
}

fn same_labels(a: &Ordered<String>, b: &Ordered<String>) -> bool {
    let mut x: Vec<_> = a.0.iter().collect();
    let mut y: Vec<_> = b.0.iter().collect();
    x.sort();
    y.sort();
    x == y
}

fn show_labels(l: &Ordered<String>) -> String {
    let inner: Vec<String> = l.0.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn parse_case(path: &Path, node: &Node) -> Result<Case, ConfigError> {
    let what = "a test";
    let f = Fields::new(
        path,
        node,
        what,
        &["name", "start", "interval", "input", "expect"],
    )?;
    let (name, _) = f.required_str("name", what)?;
    let start = match f.str("start", what)? {
        Some((s, n)) => crate::decode::time::parse_rfc3339(s).map_err(|m| err(path, n, m))?,
        None => DEFAULT_START,
    };
    let interval = match f.str("interval", what)? {
        Some((s, n)) => parse_duration(s).map_err(|m| err(path, n, m))?,
        None => 60_000,
    };
    let mut events = Vec::new();
    let input = f.required("input", what)?;
    for item in input
        .as_seq()
        .ok_or_else(|| f.wrong(input, "input", what, "a list"))?
    {
        let w = "an input series";
        let s = Fields::new(
            path,
            item,
            w,
            &["event", "values", "counts", "set", "interval", "offset"],
        )?;
        let ev_node = s.required("event", w)?;
        let template = to_json(ev_node);
        let Json::Object(template) = template else {
            return Err(err(
                path,
                ev_node,
                "`event` must be a mapping: one event, as JSON would write it",
            ));
        };
        let step = match s.str("interval", w)? {
            Some((v, n)) => parse_duration(v).map_err(|m| err(path, n, m))?,
            None => interval,
        };
        let offset = match s.str("offset", w)? {
            Some((v, n)) => parse_duration(v).map_err(|m| err(path, n, m))?,
            None => 0,
        };
        let kind = template
            .get("kind")
            .and_then(Json::as_str)
            .unwrap_or("metric");
        let (series, counts) = match (s.str("values", w)?, s.str("counts", w)?) {
            (Some((v, n)), None) => (parse_series(v).map_err(|m| err(path, n, m))?, false),
            (None, Some((v, n))) => (parse_series(v).map_err(|m| err(path, n, m))?, true),
            _ => {
                return Err(err(
                    path,
                    item,
                    "an input series needs exactly one of `values` or `counts`",
                ))
            }
        };
        let set = match s.str("set", w)? {
            Some((v, _)) => v.to_string(),
            None => match kind {
                "span" => "duration_ms".into(),
                _ => "value".into(),
            },
        };
        if !counts && kind == "log" && s.get("set").is_none() {
            return Err(err(path, item, "log events have no `value`: use `counts`, or `set: <field>` to say where each value goes"));
        }
        for (i, v) in series.iter().enumerate() {
            let Some(v) = v else { continue };
            let t = start + offset + step * i as Millis;
            let copies = if counts { *v as usize } else { 1 };
            for _ in 0..copies {
                let mut ev = template.clone();
                ev.insert("time".into(), Json::from(t));
                if !counts {
                    let num = Json::Number(Number::from_f64(*v).unwrap_or(Number::from(0)));
                    match (kind, set.as_str()) {
                        (_, "value" | "duration_ms") => {
                            ev.insert(set.clone(), num);
                        }
                        _ => {
                            let bag = if kind == "log" {
                                "fields"
                            } else if kind == "span" {
                                "attributes"
                            } else {
                                "labels"
                            };
                            let entry = ev.entry(bag).or_insert_with(|| Json::Object(Map::new()));
                            if let Json::Object(m) = entry {
                                m.insert(set.clone(), num);
                            }
                        }
                    }
                }
                events.push((t, Json::Object(ev).to_string(), item.pos.line));
            }
        }
    }
    let mut expect = Vec::new();
    if let Some(en) = f.get("expect") {
        for e in en
            .as_seq()
            .ok_or_else(|| f.wrong(en, "expect", what, "a list"))?
        {
            let w = "an expectation";
            let x = Fields::new(path, e, w, &["at", "rule", "labels", "state"])?;
            let (at_s, at_n) = x.required_str("at", w)?;
            let at = parse_duration(at_s).map_err(|m| err(path, at_n, m))?;
            let (rule, _) = x.required_str("rule", w)?;
            let (state_s, state_n) = x.required_str("state", w)?;
            let state = AlarmState::parse(state_s).ok_or_else(|| {
                err(
                    path,
                    state_n,
                    "`state` must be ok, alarm or insufficient_data",
                )
            })?;
            let mut labels = Vec::new();
            if let Some(ln) = x.get("labels") {
                for (k, v) in ln
                    .as_map()
                    .ok_or_else(|| x.wrong(ln, "labels", w, "a mapping"))?
                {
                    labels.push((
                        k.as_str().unwrap_or_default().to_string(),
                        v.as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
            expect.push(Expect {
                at,
                rule: rule.to_string(),
                labels: Ordered(labels),
                state,
                line: e.pos.line,
            });
        }
    }
    Ok(Case {
        name: name.to_string(),
        start,
        events,
        expect,
    })
}

/// `"50 85x2 _ 40"` → `[50, 85, 85, None, 40]`.
pub fn parse_series(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let (v, n) = match tok.rsplit_once('x') {
            Some((v, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                (v, n.parse::<usize>().map_err(|e| e.to_string())?)
            }
            _ => (tok, 1),
        };
        let v = if v == "_" {
            None
        } else {
            Some(
                v.parse::<f64>()
                    .map_err(|_| format!("bad value {tok:?}: expected a number, `_`, or `NxK`"))?,
            )
        };
        out.extend(std::iter::repeat_n(v, n));
    }
    Ok(out)
}

/// A YAML node as JSON; plain scalars that read as numbers or booleans are.
fn to_json(n: &Node) -> Json {
    match &n.value {
        Value::Scalar {
            text,
            quoted: false,
        } => {
            if let Ok(i) = text.parse::<i64>() {
                Json::from(i)
            } else if let Some(f) = text.parse::<f64>().ok().and_then(Number::from_f64) {
                Json::Number(f)
            } else {
                match text.as_str() {
                    "true" => Json::Bool(true),
                    "false" => Json::Bool(false),
                    "null" | "~" => Json::Null,
                    _ => Json::String(text.clone()),
                }
            }
        }
        Value::Scalar { text, .. } => Json::String(text.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation() {
        assert_eq!(
            parse_series("50 85x2 _ _x2 1.5").unwrap(),
            vec![
                Some(50.0),
                Some(85.0),
                Some(85.0),
                None,
                None,
                None,
                Some(1.5)
            ]
        );
        assert!(parse_series("5 y").is_err());
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_failing_expectation_prints_a_diff() {
        let dir = std::env::temp_dir().join(format!("klaxon-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir,
            "r.yaml",
            "team: t\nrules:\n  - name: Hot\n    signal: metric\n    group_by: [host]\n    period: 1m\n    compute: {v: max(value)}\n    condition: v > 10\n    evaluation_periods: 2\n",
        );
        let t = write(
            &dir,
            "t.yaml",
            "rule_files: [r.yaml]\ntests:\n  - name: hot\n    input:\n      - event: {kind: metric, name: x, labels: {host: a}}\n        values: 1 20 30 5\n    expect:\n      - {at: 1m, rule: Hot, labels: {host: a}, state: ok}\n      - {at: 3m, rule: Hot, labels: {host: a}, state: alarm}\n      - {at: 4m, rule: Hot, labels: {host: a}, state: alarm}\n",
        );
        let report = TestFile::load(&t).unwrap().run().unwrap();
        assert_eq!(report.passed, 0);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        let msg = &report.failures[0].message;
        assert!(
            msg.contains("expected: alarm") && msg.contains("got: ok"),
            "{msg}"
        );
        assert!(msg.contains("3m ok → alarm"), "{msg}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
