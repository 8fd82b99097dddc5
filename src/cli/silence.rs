//! `klaxon silence add|list|expire`: silences through the dispatch API.

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{
    field, pretty, query, segment, table, whoami, ApiArgs, Client, ClientError, ErrorKind, Output,
};
use crate::alerts::matcher::Matcher;
use crate::config::duration::{format_duration, parse_duration};
use crate::config::run::Env;
use crate::decode::time::parse_rfc3339;

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Create a silence; prints its id (or the silence, with -o json).
    #[command(group = clap::ArgGroup::new("until").required(true).args(["duration", "end"]))]
    Add {
        /// Matchers: `InstanceId=~"i-0.*"` `severity=warning` (all must match;
        /// quote them for the shell).
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long from the start: 90m, 2h, 1d.
        #[arg(long, short)]
        duration: Option<String>,
        /// When it ends, RFC 3339 (2026-01-01T04:00:00Z).
        #[arg(long)]
        end: Option<String>,
        /// When it starts, RFC 3339 (default: now).
        #[arg(long)]
        start: Option<String>,
        /// Why: a ticket, the maintenance.
        #[arg(long, short)]
        comment: String,
        /// Who (default: $USER).
        #[arg(long, short)]
        author: Option<String>,
        /// table (for people) or json (the API's JSON).
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// List silences: active and pending ones (add --all for expired ones).
    List {
        /// Also expired silences.
        #[arg(long, short)]
        all: bool,
        /// table (for people) or json (the API's JSON).
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// End silences now.
    Expire {
        #[arg(required = true)]
        ids: Vec<String>,
        /// table (for people) or json (the API's JSON).
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
}

fn usage(message: String) -> ClientError {
    ClientError::new(ErrorKind::Usage, message)
}

/// Runs a silence command; its output, or the error to print.
pub fn run(cmd: SilenceCommand, api: &ApiArgs, env: &dyn Env) -> Result<String, ClientError> {
    let client = Client::from_args(api, env)?;
    match cmd {
        SilenceCommand::Add {
            matchers,
            duration,
            end,
            start,
            comment,
            author,
            output,
        } => {
            // Checked here too, so a typo is caught before the network.
            let mut written = Vec::new();
            for m in &matchers {
                let parsed = Matcher::parse(m).map_err(|e| {
                    usage(format!(
                        "matcher {m:?}: {} (at character {})",
                        e.message,
                        e.at + 1
                    ))
                })?;
                written.push(parsed.to_string());
            }
            let mut body = json!({ "matchers": written, "comment": comment });
            if let Some(d) = duration {
                let ms = parse_duration(&d).map_err(|e| usage(format!("--duration: {e}")))?;
                body["duration"] = json!(format_duration(ms));
            }
            for (flag, key, value) in [("--end", "ends_at", end), ("--start", "starts_at", start)] {
                if let Some(t) = value {
                    parse_rfc3339(&t).map_err(|e| {
                        usage(format!(
                            "{flag} {t:?}: {e} (write e.g. 2026-01-01T02:00:00Z)"
                        ))
                    })?;
                    body[key] = json!(t);
                }
            }
            let author = author.or_else(|| whoami(env)).ok_or_else(|| {
                usage("who is silencing? give --author NAME (USER is not set)".into())
            })?;
            body["created_by"] = json!(author);
            let s = client.send("POST", "/api/v1/silences", Some(&body))?;
            Ok(match output {
                Output::Json => pretty(&s),
                Output::Table => format!("{}\n", field(&s, "id")),
            })
        }
        SilenceCommand::List { all, output } => {
            let q = if all {
                String::new()
            } else {
                query(&[("state", "active".into()), ("state", "pending".into())])
            };
            let list = client.get(&format!("/api/v1/silences{q}"))?;
            Ok(match output {
                Output::Json => pretty(&list),
                Output::Table => silence_table(&list),
            })
        }
        SilenceCommand::Expire { ids, output } => {
            let mut done = Vec::new();
            for id in &ids {
                let path = format!("/api/v1/silences/{}", segment(id));
                done.push(client.send("DELETE", &path, None)?);
            }
            Ok(match output {
                Output::Json => pretty(&Value::Array(done)),
                Output::Table => done
                    .iter()
                    .map(|s| format!("expired {}\n", field(s, "id")))
                    .collect(),
            })
        }
    }
}

fn silence_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let matchers: Vec<&str> = s["matchers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                field(s, "id").to_string(),
                field(s, "state").to_string(),
                field(s, "starts_at").to_string(),
                field(s, "ends_at").to_string(),
                field(s, "created_by").to_string(),
                matchers.join(" "),
                field(s, "comment").to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no silences\n".into();
    }
    table(
        &[
            "ID",
            "STATE",
            "STARTS",
            "ENDS",
            "CREATED BY",
            "MATCHERS",
            "COMMENT",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::super::client::testing::{env, serve};
    use super::*;
    use crate::api::tests::{fixture, TOKEN};
    use crate::api::Backend;
    use clap::Parser;

    /// Parses `klaxon silence …` as the real command line does.
    fn parse(args: &[&str]) -> (SilenceCommand, ApiArgs) {
        let cli =
            crate::cli::Cli::try_parse_from(std::iter::once("klaxon").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            crate::cli::Command::Silence { command, api } => (command, api),
            other => panic!("{other:?}"),
        }
    }

    fn run_with(args: &[&str], env_pairs: &[(&str, &str)]) -> Result<String, ClientError> {
        let (cmd, api) = parse(args);
        run(cmd, &api, &env(env_pairs))
    }

    #[test]
    fn add_list_expire_through_the_api() {
        let (backend, now) = fixture();
        let url = serve(backend.clone(), now, Some(TOKEN));
        let env = [("KLAXON_API_TOKEN", TOKEN), ("USER", "kim")];
        let out = run_with(
            &[
                "silence",
                "add",
                r#"InstanceId=~"i-0.*""#,
                "severity=warning",
                "--duration",
                "2h",
                "--comment",
                "patching",
                "--url",
                &url,
            ],
            &env,
        )
        .unwrap();
        let id = out.trim().to_string();
        assert_eq!(id.len(), 16, "{out}");
        let stored = backend.silences().into_iter().find(|s| s.id == id).unwrap();
        assert_eq!(stored.created_by, "kim");
        assert_eq!(stored.comment, "patching");
        assert_eq!(stored.ends_at - stored.starts_at, 2 * 3_600_000);
        assert_eq!(
            stored
                .matchers
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>(),
            [r#"InstanceId=~"i-0.*""#, r#"severity="warning""#]
        );

        let table = run_with(&["silence", "list", "--url", &url], &[]).unwrap();
        assert_eq!(
            table,
            format!(
                "ID                STATE   STARTS                ENDS                  CREATED BY  MATCHERS                                COMMENT\n\
                 maint-b           active  2026-11-28T12:59:00Z  2026-11-28T15:00:00Z  kim         InstanceId=\"i-0b2\"                      patching b\n\
                 {id}  active  2026-11-28T13:01:01Z  2026-11-28T15:01:01Z  kim         InstanceId=~\"i-0.*\" severity=\"warning\"  patching\n"
            )
        );

        let out = run_with(&["silence", "expire", &id, "--url", &url], &env).unwrap();
        assert_eq!(out, format!("expired {id}\n"));
        let json = run_with(&["silence", "list", "-o", "json", "--url", &url], &[]).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{json}");
        assert_eq!(v[0]["id"], "maint-b");
        let json = run_with(
            &["silence", "list", "--all", "-o", "json", "--url", &url],
            &[],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[1]["id"], id.as_str());
        assert_eq!(v[1]["state"], "expired");

        // Expiring it again: the API's conflict, as the error.
        let e = run_with(&["silence", "expire", &id, "--url", &url], &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Api);
        assert_eq!(
            e.message,
            format!(
                "conflict (409 DELETE /api/v1/silences/{id}): silence \"{id}\" has already ended"
            )
        );
    }

    #[test]
    fn add_with_json_output_and_an_end() {
        let (backend, now) = fixture();
        let url = serve(backend, now, Some(TOKEN));
        let out = run_with(
            &[
                "silence",
                "add",
                "alertname=DiskFull",
                "--end",
                "2026-11-28T18:00:00Z",
                "--start",
                "2026-11-28T17:00:00Z",
                "-c",
                "disk swap",
                "--author",
                "lee",
                "-o",
                "json",
                "--url",
                &url,
            ],
            &[("KLAXON_API_TOKEN", TOKEN)],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "pending");
        assert_eq!(v["starts_at"], "2026-11-28T17:00:00Z");
        assert_eq!(v["ends_at"], "2026-11-28T18:00:00Z");
        assert_eq!(v["created_by"], "lee");
        assert_eq!(v["matchers"], json!(["alertname=\"DiskFull\""]));
    }

    /// (arguments, environment, error kind, words of the message)
    type ErrorCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], ErrorKind, &'a str);

    #[test]
    fn errors_are_clear() {
        let (backend, now) = fixture();
        let url = serve(backend.clone(), now, Some(TOKEN));
        let u = url.as_str();
        let cases: &[ErrorCase] = &[
            (
                &["silence", "add", "a~b", "-d", "1h", "-c", "x", "--url", u],
                &[("KLAXON_API_TOKEN", TOKEN), ("USER", "k")],
                ErrorKind::Usage,
                "matcher \"a~b\": expected one of",
            ),
            (
                &["silence", "add", "a=b", "-d", "2 hours", "-c", "x", "--url", u],
                &[("KLAXON_API_TOKEN", TOKEN), ("USER", "k")],
                ErrorKind::Usage,
                "--duration: bad duration",
            ),
            (
                &["silence", "add", "a=b", "--end", "tomorrow", "-c", "x", "--url", u],
                &[("KLAXON_API_TOKEN", TOKEN), ("USER", "k")],
                ErrorKind::Usage,
                "--end \"tomorrow\"",
            ),
            (
                &["silence", "add", "a=b", "-d", "1h", "-c", "x", "--url", u],
                &[("KLAXON_API_TOKEN", TOKEN)],
                ErrorKind::Usage,
                "give --author NAME",
            ),
            (
                &["silence", "add", "a=~.*", "-d", "1h", "-c", "x", "--url", u],
                &[("KLAXON_API_TOKEN", TOKEN), ("USER", "k")],
                ErrorKind::Api,
                "bad_request (400 POST /api/v1/silences): every matcher also matches",
            ),
            (
                &["silence", "add", "a=b", "-d", "1h", "-c", "x", "--url", u],
                &[("USER", "k")],
                ErrorKind::Api,
                "unauthorized (401 POST /api/v1/silences): this write needs an `Authorization: Bearer <token>` header",
            ),
            (
                &["silence", "add", "a=b", "-d", "1h", "-c", "x", "--url", u],
                &[("USER", "k"), ("KLAXON_API_TOKEN", "nope")],
                ErrorKind::Api,
                "the bearer token is not valid",
            ),
            (
                &["silence", "expire", "nope", "--url", u],
                &[("KLAXON_API_TOKEN", TOKEN)],
                ErrorKind::Api,
                "not_found (404 DELETE /api/v1/silences/nope): no silence \"nope\"",
            ),
        ];
        for (args, env, kind, words) in cases {
            let e = run_with(args, env).unwrap_err();
            assert_eq!(e.kind, *kind, "{args:?}: {e}");
            assert!(e.message.contains(words), "{args:?}: {e}");
        }
        assert_eq!(backend.silences().len(), 1, "nothing was created");
    }

    #[test]
    fn a_token_file_is_read() {
        let (backend, now) = fixture();
        let url = serve(backend.clone(), now, Some(TOKEN));
        let path = std::env::temp_dir().join(format!("klaxon-cli-token-{}", std::process::id()));
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let out = run_with(
            &[
                "silence",
                "add",
                "a=b",
                "-d",
                "1h",
                "-c",
                "x",
                "--author",
                "k",
                "--url",
                &url,
                "--token-file",
                path.to_str().unwrap(),
            ],
            &[("KLAXON_API_TOKEN", "the-file-wins")],
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(out.unwrap().trim().len(), 16);
        assert_eq!(backend.silences().len(), 2);
    }
}
