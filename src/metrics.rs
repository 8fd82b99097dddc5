//! The Prometheus metrics of `klaxon run`, served on `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub topic: String,
    /// `malformed` or `oversized`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub rule: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyFailureLabels {
    pub receiver: String,
    /// `permanent`, `transient`, `rate_limited` or `unknown_receiver`.
    pub kind: String,
}

/// Every metric, registered once; clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    pub consumed: Family<TopicLabel, Counter>,
    pub decoded: Family<TopicLabel, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    pub late: Family<TopicLabel, Counter>,
    pub lag: Family<PartitionLabels, Gauge>,
    pub partitions: Gauge,
    pub open_windows: Gauge,
    pub live_series: Gauge,
    pub watermark: Gauge<f64, AtomicU64>,
    pub evaluations: Family<RuleLabel, Counter>,
    pub state_changes: Family<ChangeLabels, Counter>,
    pub published: Counter,
    pub delivery_failures: Counter,
    pub series_split: Counter,
    pub reloads: Family<ResultLabel, Counter>,
    pub rules_loaded: Gauge,
    pub publish_latency: Histogram,
    pub rebalances: Counter,
    pub notify_sent: Family<ReceiverLabel, Counter>,
    pub notify_failures: Family<NotifyFailureLabels, Counter>,
    pub notify_retries: Family<ReceiverLabel, Counter>,
    pub notify_shed: Family<ReceiverLabel, Counter>,
    pub notify_digests: Family<ReceiverLabel, Counter>,
    pub notify_queued: Family<ReceiverLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            consumed: Family::default(),
            decoded: Family::default(),
            rejected: Family::default(),
            late: Family::default(),
            lag: Family::default(),
            partitions: Gauge::default(),
            open_windows: Gauge::default(),
            live_series: Gauge::default(),
            watermark: Gauge::default(),
            evaluations: Family::default(),
            state_changes: Family::default(),
            published: Counter::default(),
            delivery_failures: Counter::default(),
            series_split: Counter::default(),
            reloads: Family::default(),
            rules_loaded: Gauge::default(),
            // 1 ms … ~16 s
            publish_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            rebalances: Counter::default(),
            notify_sent: Family::default(),
            notify_failures: Family::default(),
            notify_retries: Family::default(),
            notify_shed: Family::default(),
            notify_digests: Family::default(),
            notify_queued: Family::default(),
        }
    }
}

impl Metrics {
    /// A registry holding every metric.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("klaxon");
        r.register(
            "events_consumed",
            "Messages read from telemetry topics",
            self.consumed.clone(),
        );
        r.register(
            "events_decoded",
            "Messages decoded into events",
            self.decoded.clone(),
        );
        r.register(
            "events_rejected",
            "Messages sent to the dead-letter topic, by reason",
            self.rejected.clone(),
        );
        r.register(
            "events_late",
            "Events that arrived after a rule's period had closed",
            self.late.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages between the read position and the end of a partition",
            self.lag.clone(),
        );
        r.register(
            "partitions_assigned",
            "Partitions this member owns",
            self.partitions.clone(),
        );
        r.register(
            "open_windows",
            "Open (period, series) windows",
            self.open_windows.clone(),
        );
        r.register("live_series", "Series with state", self.live_series.clone());
        r.register(
            "watermark_seconds",
            "Event time (Unix seconds) up to which periods are closed",
            self.watermark.clone(),
        );
        r.register(
            "rule_evaluations",
            "Period closes evaluated, per rule",
            self.evaluations.clone(),
        );
        r.register(
            "state_changes",
            "Alert state changes, per rule and new state",
            self.state_changes.clone(),
        );
        r.register(
            "alerts_published",
            "State changes delivered to the alerts topic",
            self.published.clone(),
        );
        r.register(
            "alert_delivery_failures",
            "State changes the broker did not accept",
            self.delivery_failures.clone(),
        );
        r.register(
            "series_split",
            "Series seen in more than one partition (producers must key telemetry by the rules' group_by labels)",
            self.series_split.clone(),
        );
        r.register(
            "rule_reloads",
            "Rule reloads, by result",
            self.reloads.clone(),
        );
        r.register("rules_loaded", "Rules running", self.rules_loaded.clone());
        r.register(
            "publish_latency_seconds",
            "From a period becoming closable to its state change landing on the alerts topic",
            self.publish_latency.clone(),
        );
        r.register(
            "rebalances",
            "Partition assignments and revocations",
            self.rebalances.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications a channel accepted, per receiver",
            self.notify_sent.clone(),
        );
        r.register(
            "notification_failures",
            "Failed delivery attempts, per receiver and kind (permanent ones are not retried)",
            self.notify_failures.clone(),
        );
        r.register(
            "notification_retries",
            "Delivery attempts scheduled again after a transient error or a rate limit",
            self.notify_retries.clone(),
        );
        r.register(
            "notifications_shed",
            "Notifications dropped because a receiver's backlog reached max_queue",
            self.notify_shed.clone(),
        );
        r.register(
            "notification_digests",
            "Digests sent (several notifications combined under a rate limit)",
            self.notify_digests.clone(),
        );
        r.register(
            "notifications_queued",
            "Notifications waiting per receiver",
            self.notify_queued.clone(),
        );
        r
    }
}
