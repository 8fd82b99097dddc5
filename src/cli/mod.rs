//! The `klaxon` command line. Each subcommand lives in its own file and
//! returns the process exit code.

mod check;
pub mod replay;
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
    },
    /// Run the rules over a JSONL telemetry file in event time, printing
    /// one JSON line per alert state change.
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
    },
    /// Run rule unit tests.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_duration_arg(s: &str) -> Result<i64, String> {
    crate::config::duration::parse_duration(s)
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Check { paths } => Ok(check::run(&paths)),
        Command::Replay {
            rules,
            input,
            lateness,
        } => replay::run(&rules, &input, lateness),
        Command::Test { files } => Ok(test::run(&files)),
    }
}
