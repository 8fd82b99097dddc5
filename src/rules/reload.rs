//! Hot reload of the rule files: a whole new rule set is compiled first and
//! swapped in only if every file is good; otherwise the old rules keep
//! running and the errors (the same `file:line:col` lines as `klaxon check`)
//! are logged, returned and counted.
//!
//! Triggers: a change under the rule folders (polled once a second, which
//! sees editors that save by rename and Kubernetes' symlink swap of a
//! ConfigMap volume alike), SIGHUP, and `POST /-/reload`.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::dispatch::load_dispatch;
use crate::config::receivers::ReceiversConfig;
use crate::config::{load_rules, yaml_files, RuleSet};
use crate::kafka::dispatch::DispatchShared;
use crate::kafka::sink::Sink;
use crate::metrics::{Metrics, ResultLabel};

pub struct Reloader {
    paths: Vec<PathBuf>,
    tx: Mutex<Sender<RuleSet>>,
    sink: Arc<Sink>,
    metrics: Metrics,
    /// The dispatch stage, when `klaxon run` runs one.
    dispatch: Mutex<Option<Arc<DispatchShared>>>,
    /// The configured channels: a reload whose team files page an unknown
    /// receiver or a bad target is rejected.
    receivers: Mutex<Option<ReceiversConfig>>,
}

impl Reloader {
    pub fn new(
        paths: Vec<PathBuf>,
        tx: Sender<RuleSet>,
        sink: Arc<Sink>,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Reloader {
            paths,
            tx: Mutex::new(tx),
            sink,
            metrics,
            dispatch: Mutex::new(None),
            receivers: Mutex::new(None),
        })
    }

    /// Reloads also reach the dispatch stage.
    pub fn also_dispatch(&self, d: Arc<DispatchShared>) {
        *self.dispatch.lock().expect("reloader") = Some(d);
    }

    /// Team files are checked against these receivers on every reload.
    pub fn check_receivers(&self, receivers: ReceiversConfig) {
        *self.receivers.lock().expect("reloader") = Some(receivers);
    }

    /// Compiles the rule files and hands the new set to the engine.
    /// Returns how many rules now run, or every error found.
    pub fn reload(&self, why: &str) -> Result<usize, String> {
        let count = |result: &str| {
            self.metrics
                .reloads
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .inc()
        };
        let loaded = match (load_rules(&self.paths), load_dispatch(&self.paths)) {
            (Ok(set), Ok(dispatch)) => Ok((set, dispatch)),
            (Err(mut a), Err(b)) => {
                a.extend(b);
                Err(a.iter().map(|e| e.to_string()).collect())
            }
            (Err(e), _) | (_, Err(e)) => Err(e.iter().map(|e| e.to_string()).collect()),
        };
        let loaded =
            loaded.and_then(
                |(set, dispatch)| match &*self.receivers.lock().expect("reloader") {
                    Some(r) => {
                        let errors = r.check_teams(&dispatch.teams);
                        if errors.is_empty() {
                            Ok((set, dispatch))
                        } else {
                            Err(errors)
                        }
                    }
                    None => Ok((set, dispatch)),
                },
            );
        match loaded {
            Ok((set, dispatch)) => {
                if let Some(d) = &*self.dispatch.lock().expect("reloader") {
                    d.set_config(dispatch.clone());
                }
                self.sink.set_dispatch(dispatch);
                let n = set.rules.len();
                if self.tx.lock().expect("reload channel").send(set).is_err() {
                    count("failure");
                    return Err("the engine has stopped".into());
                }
                count("success");
                tracing::info!(rules = n, trigger = why, "rules reloaded");
                Ok(n)
            }
            Err(text) => {
                count("failure");
                for e in &text {
                    tracing::error!(trigger = why, "rejected reload: {e}");
                }
                tracing::error!(
                    errors = text.len(),
                    "reload rejected; the previous rules keep running"
                );
                Err(text.join("\n"))
            }
        }
    }

    /// What the rule folders hold now: each file with its size and mtime
    /// (symlinks followed).
    fn snapshot(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let Ok(files) = yaml_files(&self.paths) else {
            return Vec::new();
        };
        files
            .into_iter()
            .map(|f| {
                let m = std::fs::metadata(&f).ok();
                let len = m.as_ref().map_or(0, |m| m.len());
                let mtime = m.and_then(|m| m.modified().ok());
                (f, len, mtime)
            })
            .collect()
    }

    /// Polls the rule folders every `every` until `stop`; reloads on change.
    pub fn watch(self: Arc<Self>, every: Duration, stop: Arc<std::sync::atomic::AtomicBool>) {
        let mut last = self.snapshot();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(every);
            let now = self.snapshot();
            if now != last {
                last = now;
                let _ = self.reload("file change");
            }
        }
    }
}
