use std::path::{Path, PathBuf};

use crate::config::{file_kind, load_dispatch, load_rules, read_yaml, yaml_files, FileKind};
use crate::rules::unit::TestFile;

/// `klaxon check PATH... [--config klaxon.yaml]`
pub fn run(paths: &[PathBuf], config: Option<&Path>) -> i32 {
    let mut errors = Vec::new();
    let mut rules = 0;
    let mut rule_teams = Vec::new();
    match load_rules(paths) {
        Ok(set) => {
            rules = set.rules.len();
            rule_teams = set.rules.into_iter().map(|r| r.team).collect();
        }
        Err(mut es) => errors.append(&mut es),
    }
    let mut dispatch = None;
    match load_dispatch(paths) {
        Ok(d) => dispatch = Some(d),
        Err(mut es) => errors.append(&mut es),
    }
    let mut tests = 0;
    match yaml_files(paths) {
        Ok(files) => {
            for f in files {
                let Ok(doc) = read_yaml(&f) else { continue }; // already reported
                if file_kind(&doc) != FileKind::Tests {
                    continue;
                }
                match TestFile::load(&f) {
                    Ok(t) => match t.check() {
                        Ok(()) => tests += 1,
                        Err(mut es) => errors.append(&mut es),
                    },
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    let run_config = config.and_then(|path| {
        match crate::config::run::load(path, &crate::config::run::OfflineEnv) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(e);
                None
            }
        }
    });
    // Both loaders report a broken YAML or dispatch file: once is enough.
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.to_string()));
    // What the team files page, against the config's receivers.
    let receiver_errors = match (&run_config, &dispatch) {
        (Some(c), Some(d)) if !c.receivers.receivers.is_empty() => {
            c.receivers.check_teams(&d.teams)
        }
        _ => Vec::new(),
    };
    if errors.is_empty() && receiver_errors.is_empty() {
        let d = dispatch.unwrap_or_default();
        if let Some(c) = &run_config {
            if c.receivers.receivers.is_empty() {
                eprintln!(
                    "warning: {} has no `receivers:`; klaxon run would log notifications, not send them",
                    c.file.display()
                );
            }
        }
        // A team file for a team no rule names (or routes to) is likely a
        // typo.
        let mut teams: Vec<&str> = rule_teams.iter().map(String::as_str).collect();
        teams.extend(d.routes.iter().map(|r| r.team.as_str()));
        for r in &d.routes {
            if !d.teams.contains_key(&r.team) && !rule_teams.contains(&r.team) {
                eprintln!(
                    "warning: {} routes to team `{}`, which has no team file (its alerts go to a receiver named `{}`)",
                    r.source, r.team, r.team
                );
            }
        }
        for name in d.teams.keys() {
            if !teams.contains(&name.as_str()) {
                let hint = crate::rules::expr::suggest(name, teams.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                eprintln!("warning: team `{name}` has a team file but no rules here{hint}");
            }
        }
        println!(
            "ok: {}, {}, {}, {}, {}, {}, {}",
            count(rules, "rule", "rules"),
            count(tests, "rule test file", "rule test files"),
            count(d.teams.len(), "team file", "team files"),
            count(d.silences.len(), "silence", "silences"),
            count(d.windows.len(), "maintenance window", "maintenance windows"),
            count(d.inhibit_rules.len(), "inhibit rule", "inhibit rules"),
            count(d.routes.len(), "route", "routes"),
        );
        if let Some(c) = &run_config {
            let n = c.receivers.receivers.len();
            if n > 0 {
                println!(
                    "ok: {}: {}; every receiver, target and on-call contact of the team files is there",
                    c.file.display(),
                    count(n, "receiver", "receivers"),
                );
            } else {
                println!("ok: {}", c.file.display());
            }
        }
        0
    } else {
        for e in &errors {
            eprintln!("{e}");
        }
        for e in &receiver_errors {
            eprintln!("{e}");
        }
        eprintln!("{} error(s)", errors.len() + receiver_errors.len());
        1
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
