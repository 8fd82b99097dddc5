use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::alerts::{DispatchConfig, Dispatcher, Kind, Notification};
use crate::config::{load_dispatch, load_rules, ConfigError};
use crate::decode::{Decoder, JsonDecoder, Rejects};
use crate::engine::{Engine, Options};
use crate::model::{Millis, StateChange};

fn report(errors: &[ConfigError]) -> i32 {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!(
        "klaxon replay: {} error(s) in the rules; nothing replayed",
        errors.len()
    );
    1
}

/// `klaxon replay --rules DIR --input FILE|- [--dispatch --outbox FILE]`:
/// state changes as JSON lines on stdout; with an outbox, the
/// notifications dispatch would have sent, as JSON lines there; progress
/// and summaries on stderr.
pub fn run(
    rules: &[PathBuf],
    input: &Path,
    lateness: i64,
    outbox: Option<&Path>,
) -> anyhow::Result<i32> {
    let set = match load_rules(rules) {
        Ok(s) => s,
        Err(errors) => return Ok(report(&errors)),
    };
    let dispatch = match outbox.map(|_| load_dispatch(rules)).transpose() {
        Ok(d) => d,
        Err(errors) => return Ok(report(&errors)),
    };
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin().lock()))
    } else {
        let f = File::open(input)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let summary = match (dispatch, outbox) {
        (Some(config), Some(path)) => {
            let to_stdout = path == Path::new("-");
            let mut outbox: Box<dyn Write> = if to_stdout {
                Box::new(BufWriter::new(io::stdout().lock()))
            } else {
                let f = File::create(path)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                Box::new(BufWriter::new(f))
            };
            let mut changes: Box<dyn Write> = if to_stdout {
                Box::new(io::sink())
            } else {
                Box::new(BufWriter::new(io::stdout().lock()))
            };
            replay_dispatch(set, config, reader, &mut changes, &mut outbox, lateness)?
        }
        _ => replay(
            set,
            reader,
            &mut BufWriter::new(io::stdout().lock()),
            lateness,
        )?,
    };
    eprint!("{summary}");
    Ok(0)
}

/// Replays `input` into `out`; returns the human summary for stderr.
pub fn replay(
    set: crate::config::RuleSet,
    input: impl BufRead,
    out: &mut impl Write,
    lateness: i64,
) -> anyhow::Result<String> {
    replay_inner(set, input, out, lateness, None)
}

/// Replays `input` into `out` and runs dispatch in event time, writing each
/// notification to `outbox` as a JSON line; returns the human summary.
///
/// The dispatcher's clock is the replay's watermark (the latest event
/// time): before each state change is dispatched, every flush due up to
/// the watermark runs at its own deadline. At the end of the input, the
/// last periods close (their changes are dispatched at their period end),
/// and the clock then advances through the deadlines of every incident
/// with changes not yet flushed, so the outbox has the last alerts' first
/// and resolved notices. It stops there: repeats of incidents still firing
/// after the input, and the end of silences after it, would go on forever
/// and are not simulated; neither are escalation tiers due after that last
/// flush. Escalation pages (teams with `escalation:`) are in the outbox
/// with their `tier` and `cycle`; nobody acknowledges in a dry run, so a
/// policy runs until the incident resolves or its passes are done.
pub fn replay_dispatch(
    set: crate::config::RuleSet,
    config: DispatchConfig,
    input: impl BufRead,
    out: &mut impl Write,
    outbox: &mut impl Write,
    lateness: i64,
) -> anyhow::Result<String> {
    let mut driver = Driver {
        dispatcher: Dispatcher::new(config),
        outbox,
        sent: Vec::new(),
        now: Millis::MIN,
        counts: BTreeMap::new(),
    };
    let mut s = replay_inner(set, input, out, lateness, Some(&mut driver))?;
    s.push_str(&driver.summary());
    Ok(s)
}

/// Drives a dispatcher in event time and writes what it sends.
struct Driver<'a, W: Write> {
    dispatcher: Dispatcher,
    outbox: &'a mut W,
    sent: Vec<Notification>,
    now: Millis,
    counts: BTreeMap<(String, Kind), u64>,
}

/// What the replay loop needs from a driver (object-safe, so the loop is
/// compiled once).
trait Dispatch {
    fn change(&mut self, c: &StateChange, now: Millis) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

impl<W: Write> Driver<'_, W> {
    /// Runs every flush due up to `to`, each at its own deadline.
    fn advance(&mut self, to: Millis) -> io::Result<()> {
        while let Some(t) = self.dispatcher.next_deadline().filter(|t| *t <= to) {
            self.dispatcher.tick(t, &mut self.sent);
            for n in self.sent.drain(..) {
                serde_json::to_writer(&mut *self.outbox, &n)?;
                self.outbox.write_all(b"\n")?;
                let receiver = match n.tier {
                    // Escalation pages are counted apart from the grouped
                    // notices: `sms (escalation)`.
                    Some(_) => format!("{} (escalation)", n.receiver),
                    None => n.receiver,
                };
                *self.counts.entry((receiver, n.kind)).or_default() += 1;
            }
        }
        self.now = self.now.max(to);
        Ok(())
    }

    fn summary(&self) -> String {
        let st = self.dispatcher.stats();
        let total: u64 = self.counts.values().sum();
        let mut s = format!(
            "klaxon dispatch: {} state changes, {} incidents, {total} notifications",
            st.changes, st.incidents
        );
        if st.duplicates > 0 {
            s.push_str(&format!(", {} duplicate changes dropped", st.duplicates));
        }
        s.push('\n');
        let mut receivers: Vec<&str> = self.counts.keys().map(|(r, _)| r.as_str()).collect();
        receivers.dedup();
        for r in receivers {
            let parts: Vec<String> = [Kind::Firing, Kind::Resolved, Kind::Repeat]
                .iter()
                .filter_map(|k| {
                    let n = self.counts.get(&(r.to_string(), *k))?;
                    Some(format!("{n} {}", k.as_str()))
                })
                .collect();
            s.push_str(&format!("  {r}: {}\n", parts.join(", ")));
        }
        if st.silenced + st.inhibited > 0 {
            s.push_str(&format!(
                "  held back: {} times by a silence or window, {} by inhibition\n",
                st.silenced, st.inhibited
            ));
        }
        s
    }
}

impl<W: Write> Dispatch for Driver<'_, W> {
    fn change(&mut self, c: &StateChange, now: Millis) -> io::Result<()> {
        let now = now.max(self.now);
        self.advance(now)?;
        self.dispatcher.ingest(c, now);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        while let Some(t) = self.dispatcher.next_changed_deadline() {
            self.advance(t)?;
        }
        self.outbox.flush()
    }
}

fn replay_inner(
    set: crate::config::RuleSet,
    mut input: impl BufRead,
    out: &mut impl Write,
    lateness: i64,
    mut dispatch: Option<&mut dyn Dispatch>,
) -> anyhow::Result<String> {
    let n_rules = set.rules.len();
    let mut engine = Engine::new(set, Options::with_lateness(lateness));
    let decoder = JsonDecoder;
    let mut rejects = Rejects::default();
    let mut changes = Vec::new();
    let (mut lines, mut events, mut written) = (0u64, 0u64, 0u64);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lines += 1;
        let line = trim(&buf);
        if line.is_empty() {
            continue;
        }
        match decoder.decode(line) {
            Ok(ev) => {
                events += 1;
                engine.ingest(&ev, &mut changes);
            }
            Err(e) => rejects.record(&format!("line {lines}"), &e),
        }
        for c in changes.drain(..) {
            serde_json::to_writer(&mut *out, &c)?;
            out.write_all(b"\n")?;
            written += 1;
            if let Some(d) = dispatch.as_deref_mut() {
                d.change(&c, engine.watermark().unwrap_or(c.period_end))?;
            }
        }
        if lines % 1_000_000 == 0 {
            eprintln!("klaxon replay: {lines} lines…");
        }
    }
    engine.flush(&mut changes);
    for c in changes.drain(..) {
        serde_json::to_writer(&mut *out, &c)?;
        out.write_all(b"\n")?;
        written += 1;
        if let Some(d) = dispatch.as_deref_mut() {
            // The last periods close at the end of the input: at their end.
            let now = engine.watermark().unwrap_or(c.period_end).max(c.period_end);
            d.change(&c, now)?;
        }
    }
    out.flush()?;
    if let Some(d) = dispatch {
        d.finish()?;
    }

    let mut s = format!(
        "klaxon replay: {lines} lines, {events} events, {} rejected, {n_rules} rules, {written} state changes\n",
        rejects.total()
    );
    for (reason, count, examples) in rejects.summary() {
        s.push_str(&format!(
            "  rejected {count}× {reason} (e.g. {})\n",
            examples.join(", ")
        ));
    }
    for r in engine.stats() {
        if r.late > 0 {
            s.push_str(&format!(
                "  late: {} events for already-closed periods of {}\n",
                r.late, r.rule
            ));
        }
    }
    Ok(s)
}

fn trim(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}
