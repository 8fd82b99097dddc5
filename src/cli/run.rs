//! `klaxon run --config klaxon.yaml`: the Kafka consumer group service.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::config::load_rules;
use crate::config::run::{load, ProcessEnv};
use crate::http::{serve, AppState};
use crate::kafka::backend::KafkaBackend;
use crate::kafka::checkpoint::Checkpoints;
use crate::kafka::consumer::{self, Shared};
use crate::kafka::dispatch::{self, check_topics, Deliver, DispatchShared, FileDeliver};
use crate::kafka::notify::Channels;
use crate::kafka::sink::Sink;
use crate::kafka::store::reader_config;
use crate::kafka::{consumer_config, producer_config};
use crate::metrics::Metrics;
use crate::rules::reload::Reloader;
use rdkafka::consumer::BaseConsumer;

pub fn run(config: &Path, exit_at_end: bool) -> anyhow::Result<i32> {
    init_logging();
    let cfg = match load(config, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let rules = match load_rules(&cfg.rules) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "klaxon run: {} error(s) in the rules; not starting",
                errors.len()
            );
            return Ok(1);
        }
    };
    let dispatch = match crate::config::dispatch::load_dispatch(&cfg.rules) {
        Ok(d) => d,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "klaxon run: {} error(s) in the team, silence or inhibit files; not starting",
                errors.len()
            );
            return Ok(1);
        }
    };
    tracing::info!(rules = rules.rules.len(), teams = dispatch.teams.len(), config = %config.display(), "starting");

    let metrics = Metrics::default();
    let mut registry = metrics.registry();
    let mut channels = None;
    let dispatcher = if cfg.dispatch.enabled {
        let deliver: Box<dyn Deliver> = if cfg.receivers.receivers.is_empty() {
            tracing::warn!(
                outbox = ?cfg.dispatch.outbox,
                "no `receivers:` in klaxon.yaml: notifications are logged (and written to dispatch.outbox), not sent"
            );
            Box::new(FileDeliver::new(cfg.dispatch.outbox.as_ref())?)
        } else {
            let errors = cfg.receivers.check_teams(&dispatch.teams);
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "klaxon run: {} error(s) in what the team files page (receivers: in {}); not starting",
                    errors.len(),
                    config.display()
                );
                return Ok(1);
            }
            for team in rules.rules.iter().map(|r| r.team.as_str()) {
                if !dispatch.teams.contains_key(team) && !cfg.receivers.receivers.contains_key(team)
                {
                    tracing::warn!(team, "team without a team file: its alerts go to a receiver named after it, and there is none");
                }
            }
            let c = Channels::start()?;
            let d = c.deliver(
                &cfg.receivers,
                metrics.clone(),
                cfg.dispatch.outbox.as_ref(),
            )?;
            channels = Some(c);
            Box::new(d)
        };
        let d = DispatchShared::new(&cfg, dispatch.clone(), deliver)?;
        if let Err(e) = check_topics(&d) {
            eprintln!("klaxon run: {e:#}");
            eprintln!("(or turn dispatch off here: `dispatch: {{ enabled: false }}`)");
            return Ok(1);
        }
        d.metrics.register(&mut registry);
        Some(d)
    } else {
        None
    };
    let registry = Arc::new(registry);
    let sink = Arc::new(Sink::new(
        producer_config(&cfg.kafka),
        &cfg.kafka,
        dispatch,
        metrics.clone(),
    )?);
    let checkpoints = match &cfg.kafka.checkpoints_topic {
        Some(topic) => {
            let c = Checkpoints::new(&cfg.kafka, topic)?;
            if let Err(e) = c.check() {
                eprintln!("klaxon run: {e:#}");
                return Ok(1);
            }
            Some(c)
        }
        None => None,
    };
    let shared = Shared::new(
        &cfg,
        rules,
        Arc::clone(&sink),
        metrics.clone(),
        cfg.workers,
        checkpoints,
    );
    let (tx, rx) = mpsc::channel();
    let reloader = Reloader::new(cfg.rules.clone(), tx, Arc::clone(&sink), metrics.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let mut dispatch_thread = None;
    if let Some(d) = &dispatcher {
        reloader.also_dispatch(Arc::clone(d));
        if !cfg.receivers.receivers.is_empty() {
            reloader.check_receivers(cfg.receivers.clone());
        }
        let reader: BaseConsumer = reader_config(
            consumer_config(&cfg.kafka),
            &format!("{}-silences", cfg.dispatch.group_id),
        )
        .create()?;
        let (book, topic, s) = (
            Arc::clone(&d.silences),
            cfg.dispatch.silences_topic.clone(),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name("silences".into())
            .spawn(move || {
                if let Err(e) = book.follow(reader, topic, s) {
                    tracing::error!(error = %e, "cannot read the silences topic");
                }
            })?;
        let reader: BaseConsumer = reader_config(
            consumer_config(&cfg.kafka),
            &format!("{}-view", cfg.dispatch.group_id),
        )
        .create()?;
        let (view, topic, s) = (
            Arc::clone(&d.view),
            cfg.dispatch.nflog_topic.clone(),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name("nflog-view".into())
            .spawn(move || {
                if let Err(e) = view.follow(reader, topic, s) {
                    tracing::error!(error = %e, "cannot follow the notification log; the API shows this member's incidents only");
                }
            })?;
        let (cfg, d, s) = (cfg.clone(), Arc::clone(d), Arc::clone(&stop));
        dispatch_thread = Some(
            std::thread::Builder::new()
                .name("dispatch".into())
                .spawn(move || dispatch::run(&cfg, d, s))?,
        );
    }

    {
        let (r, s) = (Arc::clone(&reloader), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("rules-watch".into())
            .spawn(move || r.watch(Duration::from_secs(1), s))?;
    }
    let worker = {
        let (cfg, shared, stop) = (cfg.clone(), Arc::clone(&shared), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || consumer::run(&cfg, shared, rx, stop, exit_at_end))?
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = dispatcher.as_ref().map(|d| {
        let backend: Arc<dyn crate::api::Backend> = Arc::new(KafkaBackend::new(Arc::clone(d)));
        let r = crate::api::router(Arc::clone(&backend), cfg.api_token.clone());
        match &cfg.slack_signing_secret {
            Some(secret) => r.route(
                crate::api::slack::PATH,
                crate::api::slack::interactions(
                    backend,
                    secret.clone(),
                    crate::api::routes::wall_clock(),
                ),
            ),
            None => r,
        }
    });
    let state = AppState {
        shared,
        registry,
        reloader: Arc::clone(&reloader),
        api,
    };
    let result = rt.block_on(async {
        let listen = cfg.http_listen;
        let server = tokio::spawn(async move {
            if let Err(e) = serve(listen, state).await {
                tracing::error!(error = %e, %listen, "http server failed");
            }
        });
        tokio::spawn(signals(Arc::clone(&reloader), Arc::clone(&stop)));
        let r = tokio::task::spawn_blocking(move || worker.join()).await;
        server.abort();
        r
    });
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = dispatch_thread {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "dispatch stopped"),
            Err(_) => tracing::error!("the dispatch thread panicked"),
        }
    }
    // After dispatch: it waits for what is in flight when it lets go of
    // its partitions, and the channels' runtime must run meanwhile.
    if let Some(c) = channels {
        c.stop();
    }
    let summary = match result {
        Ok(Ok(Ok(s))) => s,
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, "stopped");
            eprintln!("klaxon run: {e:#}");
            return Ok(1);
        }
        _ => anyhow::bail!("the consumer thread panicked"),
    };
    if exit_at_end {
        let secs = summary.elapsed.as_secs_f64();
        let mut l = summary.latencies;
        l.sort_by(f64::total_cmp);
        let q = |p: f64| {
            l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
        };
        eprintln!(
            "klaxon run: {} events in {:.2}s ({:.0}/s); {} state changes published; close→publish p50 {} p99 {}",
            summary.consumed,
            secs,
            summary.consumed as f64 / secs.max(1e-9),
            l.len(),
            q(0.5).map_or("-".into(), |v| format!("{:.1}ms", v * 1000.0)),
            q(0.99).map_or("-".into(), |v| format!("{:.1}ms", v * 1000.0)),
        );
    }
    Ok(0)
}

async fn signals(reloader: Arc<Reloader>, stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let r = Arc::clone(&reloader);
                let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping: committing offsets and leaving the group");
    stop.store(true, Ordering::SeqCst);
}

/// Logs to stderr; the level comes from `KLAXON_LOG` (error, warn, info,
/// debug, trace; default info).
fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let level = std::env::var("KLAXON_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
