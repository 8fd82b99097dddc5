//! Kafka in and out: `klaxon run` as a consumer group.
//!
//! - [`consumer`]: the loop. Messages → decode → the partition's engine;
//!   watermarks across partitions close periods; state changes go out
//!   through the [`sink`]; offsets are committed only past what open
//!   windows still need.
//! - [`partition`]: one assigned partition's engine, watermark and offsets.
//! - [`sink`]: the producer for the alerts and dead-letter topics.
//! - [`checkpoint`]: watermarks on a topic, for brokers that drop commit
//!   metadata.

pub mod backend;
pub mod checkpoint;
pub mod consumer;
pub mod dispatch;
pub mod notify;
pub mod partition;
pub mod sink;
pub mod store;
pub mod worker;

use rdkafka::ClientConfig;

use crate::alerts::DispatchConfig;
use crate::config::run::KafkaConfig;
use crate::model::StateChange;

/// Properties klaxon sets itself; the config cannot change them, because
/// at-least-once delivery depends on them.
const OWNED: &[&str] = &["enable.auto.commit", "enable.auto.offset.store"];

/// The consumer's client config: klaxon's defaults, then the configured
/// properties (which win, except for [`OWNED`] ones).
pub fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", "earliest")
        // Fetch tuning: librdkafka 2.x backs a full fetch queue off for 1 s
        // by default, and waits up to 500 ms for a fetch to fill.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "200000")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    if let Some(id) = &k.instance_id {
        c.set("group.instance.id", id);
    }
    for (name, v) in &k.properties {
        if !OWNED.contains(&name.as_str()) {
            c.set(name, v.expose());
        } else {
            tracing::warn!(property = %name, "ignored: klaxon manages this property");
        }
    }
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// The producer's client config (alerts and dead letters).
pub fn producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (name, v) in &k.properties {
        if is_client_wide(name) {
            c.set(name, v.expose());
        }
    }
    c
}

/// The config of the producers of klaxon's own state (checkpoints, the
/// notification log, silences and acks): one record per batch. A reader of
/// that state stops at, or starts from, the end the broker reports, and a
/// broker may report the end of a multi-record batch as its first offset
/// plus one (tansu 0.6 does), hiding the rest of the batch. These writes
/// are few (one per partition per commit or snapshot), so batching buys
/// little.
pub fn state_producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = producer_config(k);
    c.set("batch.num.messages", "1");
    c
}

/// Properties that apply to a producer too (security, client id, …).
fn is_client_wide(name: &str) -> bool {
    [
        "security.",
        "sasl.",
        "ssl.",
        "client.id",
        "socket.",
        "broker.",
        "reconnect.",
        "api.version",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The alerts-topic key of a change: its notification group, which is
/// exactly the dispatch stage's incident key: its team after routing, and
/// that team's `group_by` (or the default grouping for a team without a
/// file). So one partition, and one consumer downstream, sees every alert
/// of an incident.
pub fn group_key(change: &StateChange, dispatch: &DispatchConfig) -> String {
    dispatch.incident_key(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{group::group_of, Alert, Team};
    use crate::model::{AlarmState, Ordered};

    fn change(team: &str) -> StateChange {
        StateChange {
            id: "f-1-ALARM".into(),
            fingerprint: "f".into(),
            rule: "R".into(),
            team: team.into(),
            labels: Ordered(vec![("service".into(), "api".into())]),
            state: AlarmState::Alarm,
            previous: AlarmState::Ok,
            period_end: 1,
            values: Ordered::default(),
            severity: "warning".into(),
            summary: String::new(),
            runbook: None,
        }
    }

    #[test]
    fn keys_by_the_incident() {
        let mut dispatch = DispatchConfig::default();
        let mut web = Team::default_for("web");
        web.grouping.group_by = vec!["alertname".into(), "service".into()];
        dispatch.teams.insert("web".into(), web.clone());
        let mut a = change("web");
        let key = group_key(&a, &dispatch);
        assert_eq!(key, group_of(&Alert::firing(&a), &web.grouping).0);
        // Another series of the same rule and service: the same incident.
        a.fingerprint = "g".into();
        assert_eq!(group_key(&a, &dispatch), key);
        // Another service: another incident.
        a.labels = Ordered(vec![("service".into(), "web".into())]);
        assert_ne!(group_key(&a, &dispatch), key);
        // A team without a file gets the default grouping.
        let other = change("other");
        assert_eq!(
            group_key(&other, &dispatch),
            group_of(&Alert::firing(&other), &Team::default_for("other").grouping).0
        );
    }

    #[test]
    fn owned_properties_cannot_be_overridden() {
        use crate::config::run::PropValue;
        use std::collections::BTreeMap;
        let mut k = KafkaConfig {
            brokers: "b".into(),
            group_id: "g".into(),
            instance_id: Some("pod-1".into()),
            topics: vec!["t".into()],
            alerts_topic: "a".into(),
            dlq_topic: "d".into(),
            checkpoints_topic: None,
            properties: BTreeMap::new(),
        };
        k.properties
            .insert("enable.auto.commit".into(), PropValue::Plain("true".into()));
        k.properties
            .insert("fetch.wait.max.ms".into(), PropValue::Plain("20".into()));
        k.properties
            .insert("sasl.username".into(), PropValue::Plain("u".into()));
        let c = consumer_config(&k);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("20"));
        assert_eq!(c.get("group.instance.id"), Some("pod-1"));
        let p = producer_config(&k);
        assert_eq!(p.get("sasl.username"), Some("u"));
        assert_eq!(p.get("fetch.wait.max.ms"), None);
        let state = state_producer_config(&k);
        assert_eq!(state.get("batch.num.messages"), Some("1"));
        assert_eq!(state.get("sasl.username"), Some("u"));
        assert_eq!(p.get("batch.num.messages"), None, "alerts are batched");
    }
}
