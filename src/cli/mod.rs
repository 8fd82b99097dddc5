//! The `klaxon` command line. Each subcommand lives in its own file and
//! returns the process exit code.

mod ack;
mod alerts;
mod check;
pub mod client;
mod drain;
mod produce;
pub mod replay;
pub mod routes;
mod run;
mod silence;
mod tail;
mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "klaxon",
    version,
    about = "Alerts from telemetry in Kafka: event-time windows, CloudWatch-style rules."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate rule files and rule test files; exit 1 on any error.
    Check {
        /// Files or directories (searched for *.yaml / *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also check a `klaxon run` config (klaxon.yaml), and that every
        /// receiver, target and on-call contact the team files page exists
        /// there. Secrets are checked for their form, not read.
        #[arg(long, value_name = "KLAXON_YAML")]
        config: Option<PathBuf>,
    },
    /// Run the rules over a JSONL telemetry file in event time, printing
    /// one JSON line per alert state change (and, with --dispatch, the
    /// notifications they would have caused).
    Replay {
        /// Rule files or directories.
        #[arg(long, required = true)]
        rules: Vec<PathBuf>,
        /// JSONL input, one event per line; `-` for standard input.
        #[arg(long)]
        input: PathBuf,
        /// How long after a period's end to wait for late events.
        #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
        lateness: i64,
        /// Also run dispatch (grouping, inhibition, silences, the
        /// notification log) in event time, with the team, silence and
        /// inhibit files found under --rules: a dry run of what would have
        /// been sent.
        #[arg(long, requires = "outbox")]
        dispatch: bool,
        /// With --dispatch: write each notification as a JSON line here
        /// (`-`: standard output, instead of the state changes).
        #[arg(long, requires = "dispatch")]
        outbox: Option<PathBuf>,
    },
    /// Run as a Kafka consumer group: telemetry topics in, alert state
    /// changes out (see deploy/klaxon.yaml).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Stop once every partition is read to its end and idle (for
        /// tests and benchmarks), printing throughput and latency.
        #[arg(long)]
        exit_at_end: bool,
    },
    /// Write telemetry to Kafka: a JSONL file, or synthetic CloudMart
    /// traffic, keyed so that every series stays in one partition.
    Produce {
        #[arg(long, default_value = "127.0.0.1:9092", env = "KLAXON_BROKERS")]
        brokers: String,
        /// JSONL events to send, in order; `-` for standard input.
        #[arg(long, conflicts_with = "generate")]
        input: Option<PathBuf>,
        /// Generate this many CloudMart events instead (10 ms of event time apart).
        #[arg(long)]
        generate: Option<u64>,
        /// Events per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Send every event to this one topic instead of one topic per kind.
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, default_value = "telemetry.metrics")]
        metrics_topic: String,
        #[arg(long, default_value = "telemetry.logs")]
        logs_topic: String,
        #[arg(long, default_value = "telemetry.spans")]
        spans_topic: String,
        /// Instances/services per kind in generated traffic.
        #[arg(long, default_value_t = 1000)]
        series: u64,
        /// Event time of the first generated event, RFC 3339 (default: now).
        #[arg(long)]
        start: Option<String>,
        /// Print the events as JSON lines instead of sending them.
        #[arg(long)]
        stdout: bool,
        /// A librdkafka producer property, e.g. `-X security.protocol=SASL_SSL`
        /// (repeatable; overrides klaxon's defaults).
        #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
        property: Vec<String>,
    },
    /// Print a topic's messages from the beginning, one per line: alert
    /// state changes, or dead letters with their reason.
    Tail {
        #[arg(long, default_value = "127.0.0.1:9092", env = "KLAXON_BROKERS")]
        brokers: String,
        /// The topic (e.g. klaxon.alerts or klaxon.dlq).
        #[arg(default_value = "klaxon.alerts")]
        topic: String,
        /// Keep waiting for new messages instead of stopping when it is quiet.
        #[arg(long, short)]
        follow: bool,
        /// With no --follow: stop after this long without a message.
        #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
        idle: i64,
    },
    /// Bench baseline: read the config's telemetry topics with the same
    /// client settings as `run`, doing no work, until EXPECT messages.
    #[command(hide = true)]
    Drain {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        expect: u64,
    },
    /// Where alerts go: `klaxon routes test LABELS...`.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Run rule unit tests.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Silences through the dispatch API of `klaxon run`: add, list, expire.
    Silence {
        #[command(subcommand)]
        command: silence::SilenceCommand,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// List the alerts of the live incidents (dispatch API), with matchers
    /// and states as filters.
    Alerts(alerts::AlertsArgs),
    /// Acknowledge an incident (dispatch API): its escalation stops.
    Ack(ack::AckArgs),
}

#[derive(Subcommand, Debug)]
pub enum RoutesCommand {
    /// Print the team, grouping, receivers and escalation timeline of an
    /// alert with these labels, e.g. `klaxon routes test
    /// service=payments-api severity=critical alertname=CloudMart-API-ErrorRate`.
    Test {
        /// Rule, team and routes files or directories.
        #[arg(long, default_value = "rules")]
        rules: Vec<PathBuf>,
        /// When the alert fires, RFC 3339 (who is on call then; default: now).
        #[arg(long)]
        at: Option<String>,
        /// `name=value` labels (`alertname` names the rule, which gives the
        /// team and severity unless `team=`/`severity=` are given).
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

fn parse_duration_arg(s: &str) -> Result<i64, String> {
    crate::config::duration::parse_duration(s)
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Check { paths, config } => Ok(check::run(&paths, config.as_deref())),
        Command::Replay {
            rules,
            input,
            lateness,
            dispatch: _,
            outbox,
        } => replay::run(&rules, &input, lateness, outbox.as_deref()),
        Command::Test { files } => Ok(test::run(&files)),
        Command::Silence { command, api } => Ok(client::finish(silence::run(
            command,
            &api,
            &crate::config::run::ProcessEnv,
        ))),
        Command::Alerts(args) => Ok(client::finish(alerts::run(
            args,
            &crate::config::run::ProcessEnv,
        ))),
        Command::Ack(args) => Ok(client::finish(ack::run(
            args,
            &crate::config::run::ProcessEnv,
        ))),
        Command::Routes {
            command: RoutesCommand::Test { rules, at, labels },
        } => {
            let at = match at {
                Some(s) => crate::decode::time::parse_rfc3339(&s)
                    .map_err(|e| anyhow::anyhow!("--at {s}: {e}"))?,
                None => chrono::Utc::now().timestamp_millis(),
            };
            Ok(routes::test(&rules, at, &labels))
        }
        Command::Run {
            config,
            exit_at_end,
        } => run::run(&config, exit_at_end),
        Command::Drain { config, expect } => drain::run(&config, expect),
        Command::Tail {
            brokers,
            topic,
            follow,
            idle,
        } => tail::run(
            &brokers,
            &topic,
            follow,
            std::time::Duration::from_millis(idle.max(0) as u64),
        ),
        Command::Produce {
            brokers,
            input,
            generate,
            rate,
            topic,
            metrics_topic,
            logs_topic,
            spans_topic,
            series,
            start,
            stdout,
            property,
        } => {
            let mut properties = Vec::new();
            for p in property {
                let Some((k, v)) = p.split_once('=') else {
                    anyhow::bail!("-X {p}: expected KEY=VALUE");
                };
                properties.push((k.trim().to_string(), v.to_string()));
            }
            let start = match start {
                None => None,
                Some(s) => Some(
                    crate::decode::time::parse_rfc3339(&s)
                        .map_err(|e| anyhow::anyhow!("--start {s}: {e}"))?,
                ),
            };
            produce::run(produce::Args {
                brokers,
                input,
                generate,
                rate,
                topic,
                metrics_topic,
                logs_topic,
                spans_topic,
                series,
                start,
                stdout,
                properties,
            })
        }
    }
}
