//! Files as written → checked, compiled forms.
//!
//! Parse (YAML with positions), then validate and compile everything, then
//! hand over: a rule set is built whole or not at all, and every error names
//! `file:line:col`, the rule, and what is wrong.

pub mod dispatch;
pub mod duration;
pub mod receivers;
pub mod rules;
pub mod run;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use dispatch::load_dispatch;
pub use rules::{load_rules, Rule, RuleSet};
pub use yaml::Pos;

/// What class of mistake a [`ConfigError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid YAML.
    Syntax,
    /// Valid YAML, wrong shape: unknown or missing field, wrong type.
    Schema,
    /// An expression that does not compile.
    Expression,
    /// Well-formed but inconsistent: M > N, a duplicate rule name.
    Invalid,
}

/// A mistake in a file, with where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub file: PathBuf,
    pub pos: Pos,
    pub rule: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(kind: ErrorKind, file: &Path, pos: Pos, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            file: file.to_path_buf(),
            pos,
            rule: None,
            message: message.into(),
        }
    }

    pub fn in_rule(mut self, rule: Option<&str>) -> Self {
        if self.rule.is_none() {
            self.rule = rule.map(str::to_string);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: ",
            self.file.display(),
            self.pos.line,
            self.pos.col
        )?;
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// What a YAML file under `rules/` holds, told by its top-level keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `rules:` (and `team:`): rules, compiled by [`load_rules`].
    Rules,
    /// `tests:`: rule unit tests (`klaxon test`).
    Tests,
    /// `team:` without `rules:`: a team's grouping and receivers
    /// (`rules/teams/*.yaml`).
    Team,
    /// `silences:`: silences and maintenance windows (`rules/silences/`).
    Silences,
    /// `inhibit_rules:`.
    Inhibit,
    /// `routes:`: label routes to teams (`rules/routes.yaml`).
    Routes,
    Unknown,
}

pub fn file_kind(doc: &yaml::Node) -> FileKind {
    if doc.get("rules").is_some() {
        FileKind::Rules
    } else if doc.get("tests").is_some() {
        FileKind::Tests
    } else if doc.get("silences").is_some() {
        FileKind::Silences
    } else if doc.get("inhibit_rules").is_some() {
        FileKind::Inhibit
    } else if doc.get("routes").is_some() {
        FileKind::Routes
    } else if doc.get("team").is_some() {
        FileKind::Team
    } else {
        FileKind::Unknown
    }
}

/// What [`FileKind::Unknown`] reports.
pub const NOT_A_KLAXON_FILE: &str = "not a klaxon file: expected `team:` and `rules:` (a rule file), `tests:` (a rule test file), `team:` alone (a team file), `silences:`, `inhibit_rules:` or `routes:`";

/// Every `.yaml`/`.yml` file under `paths` (files are taken as given), sorted.
pub fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out, true)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<PathBuf>, explicit: bool) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(p)
        .map_err(|e| ConfigError::new(ErrorKind::Io, p, Pos::default(), e.to_string()))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(p)
            .map_err(|e| ConfigError::new(ErrorKind::Io, p, Pos::default(), e.to_string()))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue; // editors' swap files, Kubernetes' ..data links
            }
            walk(&e.path(), out, false)?;
        }
    } else if explicit || matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Reads and parses one file.
pub fn read_yaml(path: &Path) -> Result<yaml::Node, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(ErrorKind::Io, path, Pos::default(), e.to_string()))?;
    yaml::parse(&text).map_err(|e| ConfigError::new(ErrorKind::Syntax, path, e.pos, e.message))
}

/// A mapping's fields, checked against the ones allowed.
pub(crate) struct Fields<'n> {
    pub file: &'n Path,
    pub node: &'n yaml::Node,
    entries: Vec<(&'n str, &'n yaml::Node)>,
}

impl<'n> Fields<'n> {
    /// Fails on a non-mapping, an unknown key (suggesting the nearest known
    /// one) or a repeated key.
    pub fn new(
        file: &'n Path,
        node: &'n yaml::Node,
        what: &str,
        allowed: &[&str],
    ) -> Result<Self, ConfigError> {
        let map = node.as_map().ok_or_else(|| {
            ConfigError::new(
                ErrorKind::Schema,
                file,
                node.pos,
                format!("{what} must be a mapping, not {}", node.kind_name()),
            )
        })?;
        let mut entries: Vec<(&str, &yaml::Node)> = Vec::new();
        for (k, v) in map {
            let key = k.as_str().ok_or_else(|| {
                ConfigError::new(ErrorKind::Schema, file, k.pos, "keys must be plain names")
            })?;
            if !allowed.contains(&key) {
                let mut msg = format!("unknown field `{key}` in {what}");
                match crate::rules::expr::suggest(key, allowed.iter().copied()) {
                    Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
                    None => msg.push_str(&format!("; expected one of: {}", allowed.join(", "))),
                }
                return Err(ConfigError::new(ErrorKind::Schema, file, k.pos, msg));
            }
            if entries.iter().any(|(e, _)| *e == key) {
                return Err(ConfigError::new(
                    ErrorKind::Schema,
                    file,
                    k.pos,
                    format!("field `{key}` appears twice"),
                ));
            }
            entries.push((key, v));
        }
        Ok(Fields {
            file,
            node,
            entries,
        })
    }

    pub fn get(&self, key: &str) -> Option<&'n yaml::Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    pub fn required(&self, key: &str, what: &str) -> Result<&'n yaml::Node, ConfigError> {
        self.get(key).ok_or_else(|| {
            ConfigError::new(
                ErrorKind::Schema,
                self.file,
                self.node.pos,
                format!("{what} needs a `{key}` field"),
            )
        })
    }

    pub fn str(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<(&'n str, &'n yaml::Node)>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(n) => match &n.value {
                yaml::Value::Scalar { text, .. } => Ok(Some((text.as_str(), n))),
                _ => Err(self.wrong(n, key, what, "a string")),
            },
        }
    }

    pub fn required_str(
        &self,
        key: &str,
        what: &str,
    ) -> Result<(&'n str, &'n yaml::Node), ConfigError> {
        self.str(key, what)?.ok_or_else(|| {
            ConfigError::new(
                ErrorKind::Schema,
                self.file,
                self.node.pos,
                format!("{what} needs a `{key}` field"),
            )
        })
    }

    pub fn wrong(&self, n: &yaml::Node, key: &str, what: &str, expected: &str) -> ConfigError {
        ConfigError::new(
            ErrorKind::Schema,
            self.file,
            n.pos,
            format!(
                "`{key}` in {what} must be {expected}, not {}",
                n.kind_name()
            ),
        )
    }
}
