//! Rule files: `team:` and a list of `rules:`, compiled into [`Rule`]s.

use std::path::{Path, PathBuf};

use super::duration::parse_duration;
use super::yaml::{Node, Pos};
use super::{file_kind, read_yaml, yaml_files, ConfigError, ErrorKind, Fields, FileKind};
use crate::model::{Millis, Signal};
use crate::rules::expr::{self, AggCall, Expr, ExprError, Formula};
use crate::rules::state::{Policy, TreatMissing};
use crate::rules::template::{Template, BUILTIN_VARS};

/// The default allowed lateness: how long after a period's end klaxon waits
/// for stragglers before it closes the period.
pub const DEFAULT_LATENESS: Millis = 30_000;

/// The most `group_by` names a rule may have (the engine keeps them on the stack).
pub const MAX_GROUP_BY: usize = 8;

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub team: String,
    pub file: PathBuf,
    pub signal: Signal,
    /// `where`; `None` matches every event of the signal.
    pub filter: Option<Expr>,
    /// `group_by` names and how to read each from an event.
    pub group_by: Vec<(String, Expr)>,
    pub period: Millis,
    /// Overrides the run's lateness for this rule.
    pub lateness: Option<Millis>,
    /// The aggregates `compute` folds per period, in slot order.
    pub aggs: Vec<AggCall>,
    /// `compute` entries in order; each may use the names before it.
    pub compute: Vec<(String, Formula)>,
    pub condition: Formula,
    pub policy: Policy,
    pub severity: String,
    pub summary: Template,
    pub runbook: Option<String>,
    /// A hash of the rule's definition (its YAML, ignoring layout, and its
    /// team): a reload keeps the windows and state of a rule whose digest
    /// is unchanged.
    pub digest: u64,
}

/// All rules of a run, in file order.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

const FILE_FIELDS: &[&str] = &["team", "rules"];
const RULE_FIELDS: &[&str] = &[
    "name",
    "signal",
    "where",
    "group_by",
    "period",
    "lateness",
    "compute",
    "condition",
    "evaluation_periods",
    "datapoints_to_alarm",
    "treat_missing_data",
    "severity",
    "summary",
    "runbook",
];
pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

/// Loads every rule file under `paths`, skipping rule test files. Dispatch
/// files (teams, silences, inhibit rules: see
/// [`load_dispatch`](super::load_dispatch)) are checked but not returned.
/// All errors are returned, not only the first.
pub fn load_rules(paths: &[PathBuf]) -> Result<RuleSet, Vec<ConfigError>> {
    let files = yaml_files(paths).map_err(|e| vec![e])?;
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for f in files {
        let doc = match read_yaml(&f) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match file_kind(&doc) {
            FileKind::Rules => match compile_file(&f, &doc) {
                Ok(rules) => set.rules.extend(rules),
                Err(mut es) => errors.append(&mut es),
            },
            // Rule test files are `klaxon test`'s.
            FileKind::Tests => {}
            // Dispatch files are `load_dispatch`'s, but a folder loads
            // whole or not at all, and a rule file whose `rules:` is
            // misspelt looks like a team file: its rules must not vanish.
            FileKind::Team => {
                if let Err(e) = super::dispatch::compile_team(&f, &doc) {
                    errors.push(e);
                }
            }
            FileKind::Silences => {
                if let Err(mut es) = super::dispatch::compile_silences(&f, &doc) {
                    errors.append(&mut es);
                }
            }
            FileKind::Inhibit => {
                if let Err(mut es) = super::dispatch::compile_inhibit(&f, &doc) {
                    errors.append(&mut es);
                }
            }
            FileKind::Routes => {
                if let Err(mut es) = super::dispatch::compile_routes(&f, &doc) {
                    errors.append(&mut es);
                }
            }
            FileKind::Unknown => errors.push(ConfigError::new(
                ErrorKind::Schema,
                &f,
                doc.pos,
                super::NOT_A_KLAXON_FILE,
            )),
        }
    }
    for (i, r) in set.rules.iter().enumerate() {
        if let Some(first) = set.rules[..i].iter().find(|o| o.name == r.name) {
            errors.push(
                ConfigError::new(
                    ErrorKind::Invalid,
                    &r.file,
                    Pos::default(),
                    format!(
                        "duplicate rule name; first defined in {}",
                        first.file.display()
                    ),
                )
                .in_rule(Some(&r.name)),
            );
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Compiles one rule file.
pub fn compile_file(file: &Path, doc: &Node) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let top = Fields::new(file, doc, "a rule file", FILE_FIELDS).map_err(|e| vec![e])?;
    let (team, _) = top
        .required_str("team", "a rule file")
        .map_err(|e| vec![e])?;
    let rules_node = top.required("rules", "a rule file").map_err(|e| vec![e])?;
    let items = rules_node
        .as_seq()
        .ok_or_else(|| vec![top.wrong(rules_node, "rules", "a rule file", "a list")])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        let name = item.get("name").and_then(Node::as_str);
        match compile_rule(file, team, item) {
            Ok(mut r) => {
                r.digest = digest(team, item);
                out.push(r)
            }
            Err(e) => errors.push(e.in_rule(name)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A stable hash of a rule's YAML value (not its position) and team.
fn digest(team: &str, node: &Node) -> u64 {
    fn walk(n: &Node, h: &mut crate::model::Fnv) {
        use crate::config::yaml::Value;
        match &n.value {
            Value::Scalar { text, quoted } => {
                h.write(&[0, *quoted as u8]);
                h.write(text.as_bytes());
                h.write(&[0xff]);
            }
            Value::Seq(items) => {
                h.write(&[1]);
                items.iter().for_each(|i| walk(i, h));
                h.write(&[0xfe]);
            }
            Value::Map(entries) => {
                h.write(&[2]);
                for (k, v) in entries {
                    walk(k, h);
                    walk(v, h);
                }
                h.write(&[0xfd]);
            }
        }
    }
    let mut h = crate::model::Fnv::default();
    h.write_str(team);
    walk(node, &mut h);
    h.finish()
}

fn expr_err(file: &Path, node: &Node, e: ExprError) -> ConfigError {
    let src = node.as_str().unwrap_or_default();
    let pos = e
        .token
        .as_deref()
        .and_then(|t| find_token(src, t))
        .map_or(node.pos, |i| node.pos_at(i));
    ConfigError::new(ErrorKind::Expression, file, pos, e.message)
}

/// The byte offset of `token` in `src` as a whole word.
fn find_token(src: &str, token: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == ':' || c == '.';
    src.match_indices(token).map(|(i, _)| i).find(|&i| {
        let before = src[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = src[i + token.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        before && after
    })
}

fn compile_rule(file: &Path, team: &str, node: &Node) -> Result<Rule, ConfigError> {
    let what = "a rule";
    let f = Fields::new(file, node, what, RULE_FIELDS)?;
    let (name, _) = f.required_str("name", what)?;
    let err = |n: &Node, kind: ErrorKind, msg: String| ConfigError::new(kind, file, n.pos, msg);

    let (signal_s, signal_n) = f.required_str("signal", what)?;
    let signal = match signal_s {
        "metric" => Signal::Metric,
        "log" => Signal::Log,
        "span" => Signal::Span,
        other => {
            return Err(err(
                signal_n,
                ErrorKind::Schema,
                format!("`signal` must be metric, log or span, not {other:?}"),
            ));
        }
    };

    let filter = match f.str("where", what)? {
        Some((src, n)) => Some(
            expr::parse(src)
                .and_then(|t| Expr::compile(&t, signal))
                .map_err(|e| expr_err(file, n, e))?,
        ),
        None => None,
    };

    let mut group_by = Vec::new();
    if let Some(n) = f.get("group_by") {
        let items = n
            .as_seq()
            .ok_or_else(|| f.wrong(n, "group_by", what, "a list of names"))?;
        for item in items {
            let label = item
                .as_str()
                .ok_or_else(|| f.wrong(item, "group_by", what, "a list of names"))?;
            if group_by.iter().any(|(l, _)| l == label) {
                return Err(err(
                    item,
                    ErrorKind::Invalid,
                    format!("`{label}` appears twice in group_by"),
                ));
            }
            let e = expr::parse(label)
                .and_then(|t| Expr::compile(&t, signal))
                .map_err(|e| expr_err(file, item, e))?;
            if !matches!(e, Expr::Field(_) | Expr::Attr(_)) {
                return Err(err(
                    item,
                    ErrorKind::Schema,
                    format!("group_by takes names, not expressions: {label:?}"),
                ));
            }
            if group_by.len() == MAX_GROUP_BY {
                return Err(err(
                    item,
                    ErrorKind::Invalid,
                    format!("group_by takes at most {MAX_GROUP_BY} names"),
                ));
            }
            group_by.push((label.to_string(), e));
        }
    }

    let duration = |key: &str, required: bool| -> Result<Option<Millis>, ConfigError> {
        let Some((s, n)) = f.str(key, what)? else {
            return if required {
                Err(err(
                    node,
                    ErrorKind::Schema,
                    format!("a rule needs a `{key}` field, e.g. `{key}: 5m`"),
                ))
            } else {
                Ok(None)
            };
        };
        let ms = parse_duration(s).map_err(|m| err(n, ErrorKind::Schema, m))?;
        Ok(Some(ms))
    };
    let period = duration("period", true)?.expect("required");
    if period < 1_000 || period % 1_000 != 0 {
        let n = f.get("period").expect("present");
        return Err(err(
            n,
            ErrorKind::Invalid,
            "`period` must be whole seconds, at least 1s".into(),
        ));
    }
    let lateness = duration("lateness", false)?;

    let compute_n = f.required("compute", what)?;
    let entries = compute_n.as_map().ok_or_else(|| {
        f.wrong(
            compute_n,
            "compute",
            what,
            "a mapping of names to expressions",
        )
    })?;
    if entries.is_empty() {
        return Err(err(
            compute_n,
            ErrorKind::Schema,
            "`compute` needs at least one entry, e.g. `cpu: avg(value)`".into(),
        ));
    }
    let mut aggs = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut compute = Vec::new();
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        if key.is_empty()
            || !key.chars().all(|c| c.is_alphanumeric() || c == '_')
            || key.starts_with("__")
        {
            return Err(err(
                k,
                ErrorKind::Schema,
                format!("a computed name must be a plain identifier, not {key:?}"),
            ));
        }
        if names.iter().any(|n| n == key) || group_by.iter().any(|(l, _)| l == key) {
            return Err(err(
                k,
                ErrorKind::Invalid,
                format!("`{key}` is defined twice"),
            ));
        }
        let src = v
            .as_str()
            .ok_or_else(|| f.wrong(v, key, "compute", "an expression"))?;
        let formula =
            Formula::compute(src, signal, &names, &mut aggs).map_err(|e| expr_err(file, v, e))?;
        names.push(key.to_string());
        compute.push((key.to_string(), formula));
    }

    let labels: Vec<String> = group_by.iter().map(|(l, _)| l.clone()).collect();
    let (cond_src, cond_n) = f.required_str("condition", what)?;
    let condition =
        Formula::condition(cond_src, &names, &labels).map_err(|e| expr_err(file, cond_n, e))?;

    let count = |key: &str| -> Result<Option<(usize, &Node)>, ConfigError> {
        let Some((s, n)) = f.str(key, what)? else {
            return Ok(None);
        };
        match s.parse::<usize>() {
            Ok(v) if v >= 1 => Ok(Some((v, n))),
            _ => Err(err(
                n,
                ErrorKind::Schema,
                format!("`{key}` must be a whole number ≥ 1, not {s:?}"),
            )),
        }
    };
    let n = count("evaluation_periods")?.map_or(1, |(v, _)| v);
    let m = match count("datapoints_to_alarm")? {
        Some((m, mn)) if m > n => {
            return Err(err(
                mn,
                ErrorKind::Invalid,
                format!("datapoints_to_alarm ({m}) cannot exceed evaluation_periods ({n})"),
            ));
        }
        Some((m, _)) => m,
        None => n,
    };
    let treat_missing = match f.str("treat_missing_data", what)? {
        None => TreatMissing::Missing,
        Some((s, tn)) => TreatMissing::parse(s).ok_or_else(|| {
            err(
                tn,
                ErrorKind::Schema,
                format!(
                    "`treat_missing_data` must be one of {}, not {s:?}",
                    TreatMissing::NAMES.join(", ")
                ),
            )
        })?,
    };

    let severity = match f.str("severity", what)? {
        None => "warning".to_string(),
        Some((s, _)) if SEVERITIES.contains(&s) => s.to_string(),
        Some((s, sn)) => {
            return Err(err(
                sn,
                ErrorKind::Schema,
                format!(
                    "`severity` must be one of {}, not {s:?}",
                    SEVERITIES.join(", ")
                ),
            ));
        }
    };

    let mut known: Vec<&str> = names.iter().map(String::as_str).collect();
    known.extend(labels.iter().map(String::as_str));
    known.extend(BUILTIN_VARS);
    let summary = match f.str("summary", what)? {
        None => Template::parse("{{rule}} is {{state}}", BUILTIN_VARS).expect("valid"),
        Some((s, sn)) => Template::parse(s, &known)
            .map_err(|(at, msg)| ConfigError::new(ErrorKind::Schema, file, sn.pos_at(at), msg))?,
    };
    let runbook = f.str("runbook", what)?.map(|(s, _)| s.to_string());

    Ok(Rule {
        name: name.to_string(),
        team: team.to_string(),
        file: file.to_path_buf(),
        signal,
        filter,
        group_by,
        period,
        lateness,
        aggs,
        compute,
        condition,
        policy: Policy {
            evaluation_periods: n,
            datapoints_to_alarm: m,
            treat_missing,
        },
        severity,
        summary,
        runbook,
        digest: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    const GOOD: &str = r#"team: platform
rules:
  - name: CloudMart-EC2-HighCPU
    signal: metric
    where: name == "CPUUtilization" && namespace == "AWS/EC2"
    group_by: [InstanceId]
    period: 5m
    compute: { cpu: avg(value) }
    condition: cpu > 80
    evaluation_periods: 2
    datapoints_to_alarm: 2
    severity: warning
    summary: "CPU {{cpu}}% on {{InstanceId}}"
"#;

    fn compile(text: &str) -> Result<Vec<Rule>, Vec<ConfigError>> {
        let doc = yaml::parse(text).unwrap();
        compile_file(Path::new("r.yaml"), &doc)
    }

    #[test]
    fn compiles_the_brief_example() {
        let rules = compile(GOOD).unwrap();
        let r = &rules[0];
        assert_eq!(r.period, 300_000);
        assert_eq!(r.policy.evaluation_periods, 2);
        assert_eq!(r.aggs.len(), 1);
        assert_eq!(r.team, "platform");
    }

    /// A rule file with `rules:` misspelt would read as a team file; its
    /// rules must not silently disappear from the set.
    #[test]
    fn a_misspelt_rules_key_is_an_error_not_a_team_file() {
        let dir = std::env::temp_dir().join(format!("klaxon-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.yaml"), GOOD.replace("rules:", "rule:")).unwrap();
        let errs = load_rules(std::slice::from_ref(&dir)).unwrap_err();
        std::fs::remove_dir_all(&dir).ok();
        let e = errs[0].to_string();
        assert!(e.contains("r.yaml:2:1: "), "{e}");
        assert!(e.contains("did you mean `rules`"), "{e}");
    }

    /// (a replacement applied to GOOD, expected `line:col`, words in the message)
    #[test]
    fn errors_name_line_column_rule_and_cause() {
        let cases = [
            (
                "condition: cpu > 80",
                "condition: cpuu > 80",
                "9:16",
                "undefined variable `cpuu`",
            ),
            ("avg(value)", "avgg(value)", "8:21", "did you mean `avg`"),
            (
                "datapoints_to_alarm: 2",
                "datapoints_to_alarm: 3",
                "11:26",
                "cannot exceed",
            ),
            (
                "severity: warning",
                "severty: warning",
                "12:5",
                "unknown field `severty`",
            ),
            ("period: 5m", "period: 5 minutes", "7:13", "bad duration"),
            (
                "signal: metric",
                "signal: metrics",
                "4:13",
                "metric, log or span",
            ),
            (
                "{{InstanceId}}",
                "{{Instance}}",
                "13:31",
                "did you mean `InstanceId`",
            ),
            (
                "&& namespace",
                "&& contians(namespace, \"x\") &&  namespace",
                "5:40",
                "did you mean `contains`",
            ),
        ];
        for (from, to, at, words) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from} not found");
            let errs = compile(&text).expect_err(to);
            let e = errs[0].to_string();
            assert!(
                e.starts_with(&format!("r.yaml:{at}: rule `CloudMart-EC2-HighCPU`: ")),
                "{to}: {e}"
            );
            assert!(e.contains(words), "{to}: {e}");
        }
    }
}
