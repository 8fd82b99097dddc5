//! `klaxon ack INCIDENT`: acknowledge an incident through the dispatch API
//! (its escalation stops).

use clap::Args;
use serde_json::json;

use super::client::{
    field, pretty, segment, whoami, ApiArgs, Client, ClientError, ErrorKind, Output,
};
use crate::config::run::Env;

#[derive(Args, Debug)]
pub struct AckArgs {
    /// The incident id (the INCIDENT column of `klaxon alerts`).
    pub incident: String,
    /// Who acknowledges (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// table (for people) or json (the API's JSON).
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub fn run(args: AckArgs, env: &dyn Env) -> Result<String, ClientError> {
    let client = Client::from_args(&args.api, env)?;
    let by = args.by.or_else(|| whoami(env)).ok_or_else(|| {
        ClientError::new(
            ErrorKind::Usage,
            "who acknowledges? give --by NAME (USER is not set)",
        )
    })?;
    let path = format!("/api/v1/incidents/{}/ack", segment(&args.incident));
    let incident = client.send("POST", &path, Some(&json!({ "by": by })))?;
    Ok(match args.output {
        Output::Json => pretty(&incident),
        Output::Table => format!("acknowledged {} (by {by})\n", field(&incident, "id")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::client::testing::{env, serve};
    use super::*;
    use crate::api::tests::{fixture, TOKEN};
    use crate::api::Backend;
    use clap::Parser;

    fn run_args(args: &[&str], e: &[(&str, &str)]) -> Result<String, ClientError> {
        let cli =
            crate::cli::Cli::try_parse_from(std::iter::once("klaxon").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            crate::cli::Command::Ack(a) => run(a, &env(e)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ack_reaches_the_backend() {
        let (backend, now) = fixture();
        let id = backend.incidents()[1].id.clone();
        let url = serve(backend.clone(), now, Some(TOKEN));
        let tok = [("KLAXON_API_TOKEN", TOKEN), ("USER", "kim")];
        let out = run_args(&["ack", &id, "--url", &url], &tok).unwrap();
        assert_eq!(out, format!("acknowledged {id} (by kim)\n"));
        let out = run_args(
            &["ack", &id, "--by", "lee", "-o", "json", "--url", &url],
            &tok,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(
            backend.acks(),
            vec![
                (id.clone(), "kim".to_string()),
                (id.clone(), "lee".to_string())
            ]
        );
        let e = run_args(&["ack", "no/such", "--url", &url], &tok).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Api);
        assert_eq!(
            e.message,
            "not_found (404 POST /api/v1/incidents/no%2Fsuch/ack): no live incident \"no/such\""
        );
        let e = run_args(&["ack", &id, "--url", &url], &[("USER", "kim")]).unwrap_err();
        assert!(e.message.starts_with("unauthorized (401"), "{e}");
        assert_eq!(backend.acks().len(), 2);
    }
}
