//! klaxon: an alert pipeline for telemetry that lives in Kafka.
//!
//! ```text
//!  bytes ──decode──▶ Event ──window──▶ per-period aggregates ──rules──▶ Datapoint
//!                                                                       │
//!   StateChange ◀── M-of-N state machine (CloudWatch semantics) ◀───────┘
//!       │
//!       └──alerts──▶ dedup → incidents (group) → inhibit/silence → nflog ──▶ Notification
//! ```
//!
//! - [`decode`]: one JSON object → a typed [`model::Event`], or a reason.
//! - [`window`]: event-time tumbling periods, aggregates, the cursor that
//!   closes periods behind the watermark.
//! - [`rules`]: expressions (evalexpr 11.3), the state machine, templates.
//! - [`config`]: rule files as written → compiled rules, with `file:line:col`
//!   errors.
//! - [`alerts`]: dispatch: state changes → alerts → incidents →
//!   notifications per receiver (dedup, grouping, inhibition, silences and
//!   maintenance windows, the notification log).
//! - [`notify`]: notifications → Slack, email, SMS (Twilio, SNS), webhooks,
//!   with rate limits, digests, retries and templates.
//! - [`engine`]: joins window and rules; used by both `klaxon replay` and
//!   `klaxon run`.
//! - [`kafka`]: `klaxon run` as a consumer group: per-partition engines and
//!   watermarks, offsets tied to open windows, alerts and dead letters out.
//! - [`http`], [`metrics`]: health, readiness, Prometheus metrics, reload.
//! - [`model`]: the only types the stages share.

pub mod model;

pub mod config;
pub mod decode;
pub mod engine;
pub mod kafka;
pub mod rules;
pub mod window;

pub mod alerts;
pub mod api;
pub mod notify;

pub mod http;
pub mod metrics;

pub mod cli;
