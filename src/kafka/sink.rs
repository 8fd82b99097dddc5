//! The producer side of `klaxon run`: state changes to the alerts topic and
//! rejected messages to the dead-letter topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message};

use crate::alerts::DispatchConfig;
use crate::config::run::KafkaConfig;
use crate::metrics::Metrics;
use crate::model::StateChange;

/// What a produced message was, for its delivery report.
pub struct Pending {
    /// For a state change: when its period became closable.
    closable: Option<Instant>,
}

pub struct SinkContext {
    metrics: Metrics,
    /// Deliveries that failed for good; a failure stops offset commits.
    failures: AtomicU64,
    /// Close-to-publish latencies in seconds, for the end-of-run summary.
    latencies: Mutex<Vec<f64>>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        match result {
            Ok(_) => {
                if let Some(t) = pending.closable {
                    let secs = t.elapsed().as_secs_f64();
                    self.metrics.publish_latency.observe(secs);
                    self.metrics.published.inc();
                    let mut l = self.latencies.lock().expect("latencies");
                    if l.len() < 1_000_000 {
                        l.push(secs);
                    }
                }
            }
            Err((e, msg)) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                if pending.closable.is_some() {
                    self.metrics.delivery_failures.inc();
                }
                tracing::error!(topic = msg.topic(), error = %e, "delivery failed");
            }
        }
    }
}

/// Where a rejected message came from, and why it was rejected.
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub reason: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0} message(s) could not be delivered; offsets are not committed past them")]
    Undelivered(u64),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

pub struct Sink {
    producer: ThreadedProducer<SinkContext>,
    alerts_topic: String,
    dlq_topic: String,
    /// Team grouping, for the message key (replaced on a reload).
    dispatch: RwLock<DispatchConfig>,
}

impl Sink {
    pub fn new(
        config: ClientConfig,
        kafka: &KafkaConfig,
        dispatch: DispatchConfig,
        metrics: Metrics,
    ) -> Result<Self, KafkaError> {
        let ctx = SinkContext {
            metrics,
            failures: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
        };
        Ok(Sink {
            producer: config.create_with_context(ctx)?,
            alerts_topic: kafka.alerts_topic.clone(),
            dlq_topic: kafka.dlq_topic.clone(),
            dispatch: RwLock::new(dispatch),
        })
    }

    /// Swaps in reloaded team files.
    pub fn set_dispatch(&self, d: DispatchConfig) {
        *self.dispatch.write().expect("dispatch config") = d;
    }

    /// Queues a state change, keyed by its notification group.
    pub fn publish(&self, change: &StateChange, closable: Instant) -> Result<(), KafkaError> {
        let payload = serde_json::to_vec(change).expect("a state change serializes");
        let key = super::group_key(change, &self.dispatch.read().expect("dispatch config"));
        let headers = OwnedHeaders::new().insert(Header {
            key: "klaxon.id",
            value: Some(change.id.as_bytes()),
        });
        let record = BaseRecord::with_opaque_to(
            &self.alerts_topic,
            Box::new(Pending {
                closable: Some(closable),
            }),
        )
        .key(key.as_bytes())
        .payload(payload.as_slice())
        .headers(headers);
        self.send(record)
    }

    /// Queues a rejected message for the dead-letter topic, with headers
    /// naming its source and the reason.
    pub fn dead_letter(&self, d: &DeadLetter<'_>) -> Result<(), KafkaError> {
        let (partition, offset) = (d.partition.to_string(), d.offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "klaxon.source.topic",
                value: Some(d.topic),
            })
            .insert(Header {
                key: "klaxon.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "klaxon.source.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "klaxon.reason",
                value: Some(d.reason),
            });
        let mut record =
            BaseRecord::with_opaque_to(&self.dlq_topic, Box::new(Pending { closable: None }))
                .payload(d.payload)
                .headers(headers);
        if let Some(k) = d.key {
            record = record.key(k);
        }
        self.send(record)
    }

    fn send(&self, mut record: BaseRecord<'_, [u8], [u8], Box<Pending>>) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Waits until everything queued is delivered. Fails if any delivery
    /// failed since the start: the caller must not commit offsets then.
    pub fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer.flush(timeout)?;
        match self.producer.context().failures.load(Ordering::SeqCst) {
            0 => Ok(()),
            n => Err(SinkError::Undelivered(n)),
        }
    }

    /// Close-to-publish latencies seen so far (seconds).
    pub fn latencies(&self) -> Vec<f64> {
        self.producer
            .context()
            .latencies
            .lock()
            .expect("latencies")
            .clone()
    }

    pub fn shared(self) -> Arc<Sink> {
        Arc::new(self)
    }
}
