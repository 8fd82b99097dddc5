use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::config::load_rules;
use crate::decode::{Decoder, JsonDecoder, Rejects};
use crate::engine::{Engine, Options};

/// `klaxon replay --rules DIR --input FILE|-`: state changes as JSON lines on
/// stdout; progress and the summary of rejected events on stderr.
pub fn run(rules: &[PathBuf], input: &Path, lateness: i64) -> anyhow::Result<i32> {
    let set = match load_rules(rules) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "klaxon replay: {} error(s) in the rules; nothing replayed",
                errors.len()
            );
            return Ok(1);
        }
    };
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin().lock()))
    } else {
        let f = File::open(input)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", input.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let summary = replay(
        set,
        reader,
        &mut BufWriter::new(io::stdout().lock()),
        lateness,
    )?;
    eprint!("{summary}");
    Ok(0)
}

/// Replays `input` into `out`; returns the human summary for stderr.
pub fn replay(
    set: crate::config::RuleSet,
    mut input: impl BufRead,
    out: &mut impl Write,
    lateness: i64,
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
    }
    out.flush()?;

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
