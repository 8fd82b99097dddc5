//! `klaxon alerts`: the alerts of the live incidents, through the dispatch
//! API.

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::client::{field, pretty, query, table, ApiArgs, Client, ClientError, ErrorKind, Output};
use crate::alerts::matcher::Matcher;
use crate::alerts::BUILTIN_LABELS;
use crate::config::run::Env;

/// An alert's state as the API filters it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Firing, neither silenced nor inhibited.
    Firing,
    /// Firing, held back by a silence or maintenance window.
    Silenced,
    /// Firing, held back by an inhibit rule.
    Inhibited,
    /// Resolved, not yet flushed out of its incident.
    Resolved,
}

#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// Matchers (all must match): `InstanceId=~"i-0.*"` `severity=critical`.
    pub matchers: Vec<String>,
    /// Only these states (repeat or comma-separate: firing,silenced).
    #[arg(long, short, value_enum, value_delimiter = ',')]
    pub state: Vec<State>,
    /// table (for people) or json (the API's JSON).
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub fn run(args: AlertsArgs, env: &dyn Env) -> Result<String, ClientError> {
    let client = Client::from_args(&args.api, env)?;
    let mut pairs = Vec::new();
    for m in &args.matchers {
        let parsed = Matcher::parse(m).map_err(|e| {
            ClientError::new(
                ErrorKind::Usage,
                format!("matcher {m:?}: {} (at character {})", e.message, e.at + 1),
            )
        })?;
        pairs.push(("filter", parsed.to_string()));
    }
    for s in &args.state {
        let name = s.to_possible_value().expect("no skipped variants");
        pairs.push(("state", name.get_name().to_string()));
    }
    let list = client.get(&format!("/api/v1/alerts{}", query(&pairs)))?;
    Ok(match args.output {
        Output::Json => pretty(&list),
        Output::Table => alert_table(&list),
    })
}

fn alert_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let labels = &a["labels"];
            let other: Vec<String> = labels
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !BUILTIN_LABELS.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            vec![
                field(a, "api_state").to_string(),
                field(labels, "alertname").to_string(),
                field(labels, "severity").to_string(),
                field(a, "team").to_string(),
                other.join(" "),
                field(a, "starts_at").to_string(),
                field(a, "incident").to_string(),
                field(a, "summary").to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no alerts\n".into();
    }
    table(
        &[
            "STATE", "ALERT", "SEVERITY", "TEAM", "LABELS", "SINCE", "INCIDENT", "SUMMARY",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::super::client::testing::{env, serve};
    use super::*;
    use crate::api::tests::fixture;
    use crate::api::Backend;
    use clap::Parser;

    fn run_args(args: &[&str]) -> Result<String, ClientError> {
        let cli =
            crate::cli::Cli::try_parse_from(std::iter::once("klaxon").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            crate::cli::Command::Alerts(a) => run(a, &env(&[])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_table_of_the_filtered_alerts() {
        let (backend, now) = fixture();
        let inc = |rule: &str| {
            backend
                .incidents()
                .into_iter()
                .find(|i| i.group.get("alertname").map(String::as_str) == Some(rule))
                .unwrap()
                .id
        };
        let (cpu, disk) = (inc("HighCPU"), inc("DiskFull"));
        let url = serve(backend.clone(), now, None);
        let out = run_args(&["alerts", r#"InstanceId=~"i-0.*""#, "--url", &url]).unwrap();
        let mut lines: Vec<&str> = out.lines().collect();
        let header = lines.remove(0);
        assert_eq!(
            header,
            format!(
                "STATE     ALERT     SEVERITY  TEAM      LABELS            SINCE                 INCIDENT{}  SUMMARY",
                " ".repeat(cpu.len() - "INCIDENT".len())
            )
        );
        // All three started at 13:00; the order is by fingerprint.
        lines.sort();
        assert_eq!(
            lines,
            [
                format!("firing    HighCPU   warning   platform  InstanceId=i-0a1  2026-11-28T13:00:00Z  {cpu}  HighCPU is alarm"),
                format!("resolved  DiskFull  warning   platform  InstanceId=i-0d4  2026-11-28T13:00:00Z  {disk}  DiskFull is ok"),
                format!("silenced  HighCPU   warning   platform  InstanceId=i-0b2  2026-11-28T13:00:00Z  {cpu}  HighCPU is alarm"),
            ]
        );
    }

    #[test]
    fn states_and_json() {
        let (backend, now) = fixture();
        let url = serve(backend, now, None);
        let out = run_args(&[
            "alerts",
            "--state",
            "silenced,inhibited",
            "-o",
            "json",
            "--url",
            &url,
        ])
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let mut got: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["InstanceId"].as_str().unwrap().to_string(),
                    a["api_state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("i-0b2".to_string(), "silenced".to_string()),
                ("i-1c3".to_string(), "inhibited".to_string())
            ]
        );
        let out = run_args(&["alerts", "InstanceId=none", "--url", &url]).unwrap();
        assert_eq!(out, "no alerts\n");
        let e = run_args(&["alerts", "InstanceId", "--url", &url]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage);
        assert!(e.message.contains("expected one of"), "{e}");
    }
}
