//! Dispatch files, found by their top-level key in the same folders as the
//! rules:
//!
//! - a **team file** (`team:` without `rules:`, by convention
//!   `rules/teams/NAME.yaml`): the team's grouping and receivers;
//! - a **silence file** (`silences:`, by convention `rules/silences/`):
//!   one-off silences and recurring maintenance windows;
//! - an **inhibit file** (`inhibit_rules:`, e.g. `rules/inhibit.yaml`);
//! - a **routes file** (`routes:`, e.g. `rules/routes.yaml`): label
//!   matchers that send alerts to another team than their rule's.
//!
//! All of them compile into one [`DispatchConfig`]; every error names
//! `file:line:col`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use super::duration::parse_duration;
use super::yaml::{Node, Pos};
use super::{file_kind, read_yaml, yaml_files, ConfigError, ErrorKind, Fields, FileKind};
use crate::alerts::escalation::{Policy, Tier, TierTarget, To};
use crate::alerts::inhibit::InhibitRule;
use crate::alerts::matcher::Matcher;
use crate::alerts::oncall::{Override, Person, Rotation};
use crate::alerts::route::Route;
use crate::alerts::silence::{parse_weekday, Silence, TimeOfDay, Window, WEEKDAYS};
use crate::alerts::{DispatchConfig, Grouping, Receiver, Team};
use crate::model::{Fnv, Millis};
use crate::rules::expr::suggest;

const TEAM_FIELDS: &[&str] = &[
    "team",
    "grouping",
    "receivers",
    "people",
    "oncall",
    "escalation",
];
const ROTATION_FIELDS: &[&str] = &[
    "name",
    "people",
    "handoff",
    "timezone",
    "length",
    "start",
    "overrides",
];
const OVERRIDE_FIELDS: &[&str] = &["person", "from", "to"];
const ESCALATION_FIELDS: &[&str] = &["tiers", "repeat", "repeat_every", "reescalate_on_new_alert"];
const TIER_FIELDS: &[&str] = &["after", "notify", "send_resolved"];
const TARGET_FIELDS: &[&str] = &["receiver", "target", "oncall"];
const ROUTE_FIELDS: &[&str] = &["team", "matchers"];
const GROUPING_FIELDS: &[&str] = &[
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "send_resolved",
];
const RECEIVER_FIELDS: &[&str] = &["name", "target"];
const SILENCE_FIELDS: &[&str] = &[
    "id",
    "matchers",
    "start",
    "end",
    "every",
    "from",
    "to",
    "timezone",
    "created_by",
    "comment",
];
const INHIBIT_FIELDS: &[&str] = &["name", "source_matchers", "target_matchers", "equal"];

fn schema(file: &Path, pos: Pos, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Schema, file, pos, msg)
}

fn invalid(file: &Path, pos: Pos, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Invalid, file, pos, msg)
}

/// Reads the team, silence and inhibit files under `paths` (rule files and
/// rule test files are skipped; `load_rules` reads those). All errors are
/// returned, not only the first.
pub fn load_dispatch(paths: &[PathBuf]) -> Result<DispatchConfig, Vec<ConfigError>> {
    let files = yaml_files(paths).map_err(|e| vec![e])?;
    let mut config = DispatchConfig::default();
    let mut errors = Vec::new();
    let mut team_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        let doc = match read_yaml(&f) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match file_kind(&doc) {
            FileKind::Team => match compile_team(&f, &doc) {
                Ok(team) => {
                    if let Some(first) = team_files.get(&team.name) {
                        let pos = doc.get("team").map_or(doc.pos, |n| n.pos);
                        errors.push(invalid(
                            &f,
                            pos,
                            format!(
                                "team `{}` is already defined in {}",
                                team.name,
                                first.display()
                            ),
                        ));
                    } else {
                        team_files.insert(team.name.clone(), f.clone());
                        config.teams.insert(team.name.clone(), team);
                    }
                }
                Err(e) => errors.push(e),
            },
            FileKind::Silences => match silence_items(&f, &doc) {
                Ok(items) => {
                    for (item, pos) in items {
                        let id = match &item {
                            Either::Once(s) => &s.id,
                            Either::Weekly(w) => &w.id,
                        };
                        if let Some(first) = ids.get(id) {
                            errors.push(invalid(
                                &f,
                                pos,
                                format!("silence id `{id}` is already used in {}", first.display()),
                            ));
                            continue;
                        }
                        ids.insert(id.clone(), f.clone());
                        match item {
                            Either::Once(s) => config.silences.push(s),
                            Either::Weekly(w) => config.windows.push(w),
                        }
                    }
                }
                Err(mut es) => errors.append(&mut es),
            },
            FileKind::Inhibit => match compile_inhibit(&f, &doc) {
                Ok(rules) => config.inhibit_rules.extend(rules),
                Err(mut es) => errors.append(&mut es),
            },
            // Routes from several files apply in file order (sorted paths).
            FileKind::Routes => match compile_routes(&f, &doc) {
                Ok(routes) => config.routes.extend(routes),
                Err(mut es) => errors.append(&mut es),
            },
            FileKind::Rules | FileKind::Tests | FileKind::Unknown => {}
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn names(f: &Fields, key: &str, what: &str) -> Result<Option<Vec<(String, Pos)>>, ConfigError> {
    let Some(n) = f.get(key) else {
        return Ok(None);
    };
    let items = n
        .as_seq()
        .ok_or_else(|| f.wrong(n, key, what, "a list of names"))?;
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(|s| (s.to_string(), i.pos))
                .ok_or_else(|| f.wrong(i, key, what, "a list of names"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn duration(f: &Fields, key: &str, what: &str, min: Millis) -> Result<Option<Millis>, ConfigError> {
    let Some((s, n)) = f.str(key, what)? else {
        return Ok(None);
    };
    let ms = parse_duration(s).map_err(|e| schema(f.file, n.pos, format!("`{key}`: {e}")))?;
    if ms < min {
        return Err(invalid(
            f.file,
            n.pos,
            format!(
                "`{key}` must be at least {}",
                super::duration::format_duration(min)
            ),
        ));
    }
    Ok(Some(ms))
}

fn boolean(f: &Fields, key: &str, what: &str) -> Result<Option<bool>, ConfigError> {
    match f.str(key, what)? {
        None => Ok(None),
        Some(("true", _)) => Ok(Some(true)),
        Some(("false", _)) => Ok(Some(false)),
        Some((s, n)) => Err(schema(
            f.file,
            n.pos,
            format!("`{key}` must be true or false, not {s:?}"),
        )),
    }
}

/// Compiles a team file.
pub fn compile_team(file: &Path, doc: &Node) -> Result<Team, ConfigError> {
    // A rule file whose `rules:` is misspelt looks like a team file: say so.
    if let Some(map) = doc.as_map() {
        for (k, _) in map {
            if let Some(key) = k.as_str() {
                if !TEAM_FIELDS.contains(&key) && suggest(key, ["rules"]).is_some() {
                    return Err(schema(
                        file,
                        k.pos,
                        format!(
                            "unknown field `{key}` in a team file; did you mean `rules` (a rule file)?"
                        ),
                    ));
                }
            }
        }
    }
    let what = "a team file";
    let top = Fields::new(file, doc, what, TEAM_FIELDS)?;
    let (name, name_n) = top.required_str("team", what)?;
    if name.trim().is_empty() {
        return Err(schema(file, name_n.pos, "`team` must name the team"));
    }

    let mut grouping = Grouping::default();
    if let Some(g) = top.get("grouping") {
        let what = "`grouping`";
        let f = Fields::new(file, g, what, GROUPING_FIELDS)?;
        if let Some(by) = names(&f, "group_by", what)? {
            if by.iter().any(|(n, _)| n == "...") && by.len() > 1 {
                let (_, pos) = by.iter().find(|(n, _)| n == "...").expect("found");
                return Err(invalid(
                    file,
                    *pos,
                    "`...` (one incident per alert) cannot be combined with other labels",
                ));
            }
            for (i, (n, pos)) in by.iter().enumerate() {
                if by[..i].iter().any(|(o, _)| o == n) {
                    return Err(invalid(
                        file,
                        *pos,
                        format!("`{n}` appears twice in group_by"),
                    ));
                }
            }
            grouping.group_by = by.into_iter().map(|(n, _)| n).collect();
        }
        if let Some(v) = duration(&f, "group_wait", what, 0)? {
            grouping.group_wait = v;
        }
        if let Some(v) = duration(&f, "group_interval", what, 1_000)? {
            grouping.group_interval = v;
        }
        if let Some(v) = duration(&f, "repeat_interval", what, 1_000)? {
            grouping.repeat_interval = v;
        }
        if let Some(v) = boolean(&f, "send_resolved", what)? {
            grouping.send_resolved = v;
        }
    }

    let mut receivers: Vec<Receiver> = Vec::new();
    match top.get("receivers") {
        None => receivers = Team::default_for(name).receivers,
        Some(n) => {
            let items = n
                .as_seq()
                .ok_or_else(|| top.wrong(n, "receivers", what, "a list"))?;
            if items.is_empty() {
                return Err(invalid(
                    file,
                    n.pos,
                    "`receivers` is empty, so nothing would ever be sent; name at least one",
                ));
            }
            for item in items {
                let r = match item.as_str() {
                    Some(s) => Receiver {
                        name: s.to_string(),
                        target: None,
                    },
                    None => {
                        let f = Fields::new(file, item, "a receiver", RECEIVER_FIELDS)?;
                        let (rn, _) = f.required_str("name", "a receiver")?;
                        Receiver {
                            name: rn.to_string(),
                            target: f.str("target", "a receiver")?.map(|(s, _)| s.to_string()),
                        }
                    }
                };
                if r.name.trim().is_empty() {
                    return Err(schema(file, item.pos, "a receiver needs a name"));
                }
                if receivers.iter().any(|o| o.name == r.name) {
                    return Err(invalid(
                        file,
                        item.pos,
                        format!("receiver `{}` is listed twice", r.name),
                    ));
                }
                receivers.push(r);
            }
        }
    }
    let people = match top.get("people") {
        Some(n) => compile_people(file, n)?,
        None => BTreeMap::new(),
    };
    let oncall = match top.get("oncall") {
        Some(n) => compile_rotations(file, n, &people)?,
        None => BTreeMap::new(),
    };
    let escalation = match top.get("escalation") {
        Some(n) => Some(compile_escalation(
            file,
            n,
            &people,
            &oncall,
            grouping.send_resolved,
        )?),
        None => None,
    };
    Ok(Team {
        name: name.to_string(),
        grouping,
        receivers,
        escalation,
        people,
        oncall,
    })
}

/// `people:` name → { receiver: contact point }.
fn compile_people(file: &Path, n: &Node) -> Result<BTreeMap<String, Person>, ConfigError> {
    let map = n.as_map().ok_or_else(|| {
        schema(
            file,
            n.pos,
            format!(
                "`people` must map names to contact points (kim: {{email: kim@example.com}}), not {}",
                n.kind_name()
            ),
        )
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let name = k
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| schema(file, k.pos, "a person needs a name"))?;
        if out.contains_key(name) {
            return Err(invalid(
                file,
                k.pos,
                format!("person `{name}` is listed twice"),
            ));
        }
        let contacts = v.as_map().ok_or_else(|| {
            schema(
                file,
                v.pos,
                format!(
                    "`{name}` must map receiver names to contact points (email: {name}@example.com), not {}",
                    v.kind_name()
                ),
            )
        })?;
        let mut c = BTreeMap::new();
        for (rk, rv) in contacts {
            let receiver = rk
                .as_str()
                .ok_or_else(|| schema(file, rk.pos, "receiver names are plain names"))?;
            let point = rv.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                schema(
                    file,
                    rv.pos,
                    format!("`{receiver}` of `{name}` must be a contact point (an address, a number, a handle)"),
                )
            })?;
            c.insert(receiver.to_string(), point.to_string());
        }
        out.insert(
            name.to_string(),
            Person {
                name: name.to_string(),
                contacts: c,
            },
        );
    }
    Ok(out)
}

fn person_ref<'a>(
    file: &Path,
    n: &Node,
    people: &'a BTreeMap<String, Person>,
) -> Result<&'a str, ConfigError> {
    let name = n
        .as_str()
        .ok_or_else(|| schema(file, n.pos, "a person is named by a string"))?;
    match people.get_key_value(name) {
        Some((k, _)) => Ok(k),
        None => {
            let mut msg = format!("unknown person `{name}`");
            match suggest(name, people.keys().map(String::as_str)) {
                Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
                None => msg.push_str("; define them under `people:`"),
            }
            Err(invalid(file, n.pos, msg))
        }
    }
}

fn timezone(file: &Path, s: &str, n: &Node) -> Result<Tz, ConfigError> {
    s.parse().map_err(|_| {
        let mut msg = format!("unknown time zone `{s}`");
        match suggest(s, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name())) {
            Some(x) => msg.push_str(&format!("; did you mean `{x}`?")),
            None => msg.push_str("; use an IANA name such as Asia/Seoul or Europe/Berlin"),
        }
        schema(file, n.pos, msg)
    })
}

/// `1d`, `2d`, `1w`, `2w`: a rotation's shift, in whole days.
fn shift_days(s: &str) -> Result<u32, String> {
    let bad = || format!("a shift is whole days or weeks like 1d or 1w, not {s:?}");
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u32 = num.parse().map_err(|_| bad())?;
    let days = match unit {
        "d" => n,
        "w" => n.checked_mul(7).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if days == 0 || days > 366 {
        return Err(bad());
    }
    Ok(days)
}

/// `oncall:` a list of rotations.
fn compile_rotations(
    file: &Path,
    n: &Node,
    people: &BTreeMap<String, Person>,
) -> Result<BTreeMap<String, Rotation>, ConfigError> {
    let items = n.as_seq().ok_or_else(|| {
        schema(
            file,
            n.pos,
            format!(
                "`oncall` must be a list of rotations, not {}",
                n.kind_name()
            ),
        )
    })?;
    let mut out = BTreeMap::new();
    for item in items {
        let what = "a rotation";
        let f = Fields::new(file, item, what, ROTATION_FIELDS)?;
        let (name, name_n) = f.required_str("name", what)?;
        if out.contains_key(name) {
            return Err(invalid(
                file,
                name_n.pos,
                format!("rotation `{name}` is defined twice"),
            ));
        }
        let list_n = f.required("people", what)?;
        let list = list_n
            .as_seq()
            .ok_or_else(|| f.wrong(list_n, "people", what, "a list of names"))?;
        if list.is_empty() {
            return Err(invalid(
                file,
                list_n.pos,
                "a rotation needs at least one person",
            ));
        }
        let names = list
            .iter()
            .map(|p| person_ref(file, p, people).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        let (h, h_n) = f.required_str("handoff", what)?;
        let handoff =
            TimeOfDay::parse(h).map_err(|e| schema(file, h_n.pos, format!("`handoff`: {e}")))?;
        let (tz, tz_n) = f.required_str("timezone", what)?;
        let tz = timezone(file, tz, tz_n)?;
        let (len, len_n) = f.required_str("length", what)?;
        let length_days =
            shift_days(len).map_err(|e| schema(file, len_n.pos, format!("`length`: {e}")))?;
        let (start, start_n) = f.required_str("start", what)?;
        let start = chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").map_err(|_| {
            schema(
                file,
                start_n.pos,
                format!(
                    "`start` is the local date of the first handoff, YYYY-MM-DD, not {start:?}"
                ),
            )
        })?;
        let mut overrides = Vec::new();
        if let Some(o) = f.get("overrides") {
            let items = o
                .as_seq()
                .ok_or_else(|| f.wrong(o, "overrides", what, "a list"))?;
            for item in items {
                let what = "an override";
                let of = Fields::new(file, item, what, OVERRIDE_FIELDS)?;
                let person = person_ref(file, of.required("person", what)?, people)?;
                let from = rfc3339(&of, "from", what)?;
                let to = rfc3339(&of, "to", what)?;
                if to <= from {
                    let pos = of.get("to").expect("parsed").pos;
                    return Err(invalid(file, pos, "`to` must be after `from`"));
                }
                overrides.push(Override {
                    person: person.to_string(),
                    from,
                    to,
                });
            }
        }
        out.insert(
            name.to_string(),
            Rotation {
                name: name.to_string(),
                people: names,
                handoff,
                timezone: tz,
                length_days,
                start,
                overrides,
            },
        );
    }
    Ok(out)
}

/// `escalation:` tiers, repeat, re-escalation.
fn compile_escalation(
    file: &Path,
    n: &Node,
    people: &BTreeMap<String, Person>,
    rotations: &BTreeMap<String, Rotation>,
    send_resolved: bool,
) -> Result<Policy, ConfigError> {
    let what = "`escalation`";
    let f = Fields::new(file, n, what, ESCALATION_FIELDS)?;
    let tiers_n = f.required("tiers", what)?;
    let items = tiers_n
        .as_seq()
        .ok_or_else(|| f.wrong(tiers_n, "tiers", what, "a list of tiers"))?;
    if items.is_empty() {
        return Err(invalid(
            file,
            tiers_n.pos,
            "`tiers` needs at least one tier",
        ));
    }
    let mut tiers: Vec<Tier> = Vec::new();
    for item in items {
        let what = "a tier";
        let tf = Fields::new(file, item, what, TIER_FIELDS)?;
        let after = duration(&tf, "after", what, 0)?.ok_or_else(|| {
            schema(
                file,
                item.pos,
                "a tier needs an `after` delay (0s for at once)",
            )
        })?;
        if let Some(prev) = tiers.last() {
            if after <= prev.after {
                let pos = tf.get("after").expect("parsed").pos;
                return Err(invalid(
                    file,
                    pos,
                    format!(
                        "tiers go in order: `after` must be later than the tier before ({})",
                        super::duration::format_duration(prev.after)
                    ),
                ));
            }
        }
        let notify_n = tf.required("notify", what)?;
        let list = notify_n
            .as_seq()
            .ok_or_else(|| tf.wrong(notify_n, "notify", what, "a list of targets"))?;
        if list.is_empty() {
            return Err(invalid(
                file,
                notify_n.pos,
                "`notify` needs at least one target",
            ));
        }
        let mut targets = Vec::new();
        for t in list {
            let what = "a target";
            let tt = Fields::new(file, t, what, TARGET_FIELDS)?;
            let (receiver, _) = tt.required_str("receiver", what)?;
            let to = match (tt.str("target", what)?, tt.str("oncall", what)?) {
                (Some(_), Some((_, n))) => {
                    return Err(schema(
                        file,
                        n.pos,
                        "a target has `target` (a fixed one) or `oncall` (a rotation), not both",
                    ))
                }
                (Some((x, _)), None) => To::Target(x.to_string()),
                (None, None) => To::Receiver,
                (None, Some((rot, rot_n))) => {
                    let Some(r) = rotations.get(rot) else {
                        let mut msg = format!("unknown rotation `{rot}`");
                        match suggest(rot, rotations.keys().map(String::as_str)) {
                            Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
                            None => msg.push_str("; define it under `oncall:`"),
                        }
                        return Err(invalid(file, rot_n.pos, msg));
                    };
                    for who in r.everyone() {
                        if !people[who].contacts.contains_key(receiver) {
                            return Err(invalid(
                                file,
                                rot_n.pos,
                                format!(
                                    "`{who}` (rotation `{rot}`) has no `{receiver}` contact, so                                      they could not be paged by `{receiver}`"
                                ),
                            ));
                        }
                    }
                    To::OnCall(rot.to_string())
                }
            };
            targets.push(TierTarget {
                receiver: receiver.to_string(),
                to,
            });
        }
        tiers.push(Tier {
            after,
            targets,
            send_resolved: boolean(&tf, "send_resolved", what)?.unwrap_or(send_resolved),
        });
    }
    let repeat = match f.str("repeat", what)? {
        None => 0,
        Some((s, n)) => s.parse::<u32>().ok().filter(|r| *r <= 100).ok_or_else(|| {
            schema(
                file,
                n.pos,
                format!("`repeat` is how many more passes, 0 to 100, not {s:?}"),
            )
        })?,
    };
    let last = tiers.last().expect("at least one").after;
    let repeat_every = match duration(&f, "repeat_every", what, 1_000)? {
        Some(every) => {
            if every <= last {
                return Err(invalid(
                    file,
                    f.get("repeat_every").expect("parsed").pos,
                    format!(
                        "`repeat_every` (one pass) must be longer than the last tier's `after` ({})",
                        super::duration::format_duration(last)
                    ),
                ));
            }
            every
        }
        None if repeat > 0 => {
            return Err(schema(
                file,
                f.get("repeat").expect("parsed").pos,
                "`repeat` needs `repeat_every`: the length of one pass, e.g. 1h",
            ))
        }
        None => 0,
    };
    Ok(Policy {
        tiers,
        repeat,
        repeat_every,
        reescalate_on_new_alert: boolean(&f, "reescalate_on_new_alert", what)?.unwrap_or(false),
    })
}

/// Compiles a routes file: `routes:` a list of `{team, matchers}`.
pub fn compile_routes(file: &Path, doc: &Node) -> Result<Vec<Route>, Vec<ConfigError>> {
    let top = Fields::new(file, doc, "a routes file", &["routes"]).map_err(|e| vec![e])?;
    let n = top
        .required("routes", "a routes file")
        .map_err(|e| vec![e])?;
    let items = n
        .as_seq()
        .ok_or_else(|| vec![top.wrong(n, "routes", "a routes file", "a list")])?;
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for item in items {
        let route = (|| {
            let what = "a route";
            let f = Fields::new(file, item, what, ROUTE_FIELDS)?;
            let (team, team_n) = f.required_str("team", what)?;
            if team.trim().is_empty() {
                return Err(schema(file, team_n.pos, "`team` must name a team"));
            }
            Ok(Route {
                team: team.to_string(),
                matchers: matchers(&f, "matchers", what)?,
                source: format!("{}:{}", file.display(), item.pos.line),
            })
        })();
        match route {
            Ok(r) => out.push(r),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A list of matcher strings, each checked where it is written.
fn matchers(f: &Fields, key: &str, what: &str) -> Result<Vec<Matcher>, ConfigError> {
    let n = f.required(key, what)?;
    let items = n.as_seq().ok_or_else(|| {
        f.wrong(
            n,
            key,
            what,
            r#"a list of matchers like 'InstanceId=~"i-0.*"'"#,
        )
    })?;
    if items.is_empty() {
        return Err(invalid(
            f.file,
            n.pos,
            format!("`{key}` needs at least one matcher"),
        ));
    }
    items
        .iter()
        .map(|i| {
            let s = i
                .as_str()
                .ok_or_else(|| f.wrong(i, key, what, "a list of matcher strings"))?;
            Matcher::parse(s).map_err(|e| schema(f.file, i.pos_at(e.at), e.message))
        })
        .collect()
}

fn rfc3339(f: &Fields, key: &str, what: &str) -> Result<Millis, ConfigError> {
    let (s, n) = f.required_str(key, what)?;
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            schema(
                f.file,
                n.pos,
                format!("`{key}` must be an RFC 3339 time like 2026-11-28T13:00:00Z ({e})"),
            )
        })
}

fn content_id(prefix: &str, parts: &[&str], matchers: &[Matcher]) -> String {
    let mut h = Fnv::default();
    for p in parts {
        h.write_str(p);
    }
    for m in matchers {
        h.write_str(&m.to_string());
    }
    format!("{prefix}-{:016x}", h.finish())
}

/// Compiles a silence file: one-off silences (`start`, `end`) and
/// recurring windows (`every`, `from`, `to`, `timezone`).
pub fn compile_silences(
    file: &Path,
    doc: &Node,
) -> Result<(Vec<Silence>, Vec<Window>), Vec<ConfigError>> {
    let (mut silences, mut windows) = (Vec::new(), Vec::new());
    for (item, _) in silence_items(file, doc)? {
        match item {
            Either::Once(s) => silences.push(s),
            Either::Weekly(w) => windows.push(w),
        }
    }
    Ok((silences, windows))
}

/// Each silence or window of the file, with where it is written.
fn silence_items(file: &Path, doc: &Node) -> Result<Vec<(Either, Pos)>, Vec<ConfigError>> {
    let top = Fields::new(file, doc, "a silence file", &["silences"]).map_err(|e| vec![e])?;
    let n = top
        .required("silences", "a silence file")
        .map_err(|e| vec![e])?;
    let items = n
        .as_seq()
        .ok_or_else(|| vec![top.wrong(n, "silences", "a silence file", "a list")])?;
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for item in items {
        match compile_silence(file, item) {
            Ok(x) => out.push((x, item.pos)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

enum Either {
    Once(Silence),
    Weekly(Window),
}

fn compile_silence(file: &Path, node: &Node) -> Result<Either, ConfigError> {
    let what = "a silence";
    let f = Fields::new(file, node, what, SILENCE_FIELDS)?;
    let ms = matchers(&f, "matchers", what)?;
    if ms.iter().all(|m| m.matches_value(None)) {
        return Err(invalid(
            file,
            f.get("matchers").map_or(node.pos, |n| n.pos),
            "every matcher here matches an empty label, so this would silence every alert; \
             add one that needs a value, e.g. alertname=\"…\"",
        ));
    }
    let (comment, _) = f.required_str("comment", what)?;
    let created_by = f.str("created_by", what)?.map(|(s, _)| s.to_string());
    let id = f.str("id", what)?.map(|(s, _)| s.to_string());

    if f.get("every").is_none() {
        for key in ["from", "to", "timezone"] {
            if let Some(n) = f.get(key) {
                return Err(schema(
                    file,
                    n.pos,
                    format!(
                        "`{key}` belongs to a recurring window, which needs `every:` (e.g. \
                         `every: [sunday]`); a one-off silence has `start` and `end`"
                    ),
                ));
            }
        }
        let starts_at = rfc3339(&f, "start", what)?;
        let ends_at = rfc3339(&f, "end", what)?;
        if ends_at <= starts_at {
            let pos = f.get("end").expect("parsed").pos;
            return Err(invalid(file, pos, "`end` must be after `start`"));
        }
        let created_by = created_by.ok_or_else(|| {
            schema(
                file,
                node.pos,
                "a silence needs a `created_by` field (who set it)",
            )
        })?;
        let id = id.unwrap_or_else(|| {
            content_id("s", &[&starts_at.to_string(), &ends_at.to_string()], &ms)
        });
        return Ok(Either::Once(Silence {
            id,
            matchers: ms,
            starts_at,
            ends_at,
            created_by,
            comment: comment.to_string(),
        }));
    }

    for key in ["start", "end"] {
        if let Some(n) = f.get(key) {
            return Err(schema(
                file,
                n.pos,
                format!(
                    "`{key}` belongs to a one-off silence; a recurring window (with `every`) has \
                     `from`, `to` and `timezone`"
                ),
            ));
        }
    }
    let every_n = f.get("every").expect("checked");
    let days_n = match every_n.as_seq() {
        Some(items) => items.to_vec(),
        None if every_n.as_str().is_some() => vec![every_n.clone()],
        None => return Err(f.wrong(every_n, "every", what, "a list of weekdays")),
    };
    let mut every = Vec::new();
    for d in &days_n {
        let s = d
            .as_str()
            .ok_or_else(|| f.wrong(d, "every", what, "a list of weekdays"))?;
        let day = parse_weekday(s).ok_or_else(|| {
            let mut msg = format!("`{s}` is not a weekday");
            match suggest(&s.to_ascii_lowercase(), WEEKDAYS) {
                Some(w) => msg.push_str(&format!("; did you mean `{w}`?")),
                None => msg.push_str(&format!("; use {}", WEEKDAYS.join(", "))),
            }
            schema(file, d.pos, msg)
        })?;
        if !every.contains(&day) {
            every.push(day);
        }
    }
    if every.is_empty() {
        return Err(invalid(
            file,
            every_n.pos,
            "`every` needs at least one weekday",
        ));
    }
    let time = |key: &str| -> Result<(TimeOfDay, &Node), ConfigError> {
        let (s, n) = f.required_str(key, what)?;
        TimeOfDay::parse(s)
            .map(|t| (t, n))
            .map_err(|e| schema(file, n.pos, format!("`{key}`: {e}")))
    };
    let (from, from_n) = time("from")?;
    let (to, to_n) = time("to")?;
    if from == to {
        return Err(invalid(
            file,
            to_n.pos,
            "`from` and `to` are the same time; for a whole day write from: \"00:00\", to: \"24:00\"",
        ));
    }
    if from.minutes() == 24 * 60 {
        return Err(schema(file, from_n.pos, "`from` must be before 24:00"));
    }
    let (tz_s, tz_n) = f.required_str("timezone", what)?;
    let timezone = timezone(file, tz_s, tz_n)?;
    let days: Vec<String> = every.iter().map(|d| d.to_string()).collect();
    let id = id.unwrap_or_else(|| {
        let mut parts: Vec<&str> = days.iter().map(String::as_str).collect();
        let (from_s, to_s) = (from.to_string(), to.to_string());
        parts.extend([from_s.as_str(), to_s.as_str(), tz_s]);
        content_id("w", &parts, &ms)
    });
    Ok(Either::Weekly(Window {
        id,
        matchers: ms,
        every,
        from,
        to,
        timezone,
        created_by: created_by.unwrap_or_else(|| file.display().to_string()),
        comment: comment.to_string(),
    }))
}

/// Compiles an inhibit file.
pub fn compile_inhibit(file: &Path, doc: &Node) -> Result<Vec<InhibitRule>, Vec<ConfigError>> {
    let top = Fields::new(file, doc, "an inhibit file", &["inhibit_rules"]).map_err(|e| vec![e])?;
    let n = top
        .required("inhibit_rules", "an inhibit file")
        .map_err(|e| vec![e])?;
    let items = n
        .as_seq()
        .ok_or_else(|| vec![top.wrong(n, "inhibit_rules", "an inhibit file", "a list")])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        let rule = (|| {
            let what = "an inhibit rule";
            let f = Fields::new(file, item, what, INHIBIT_FIELDS)?;
            let name = match f.str("name", what)? {
                Some((s, _)) => s.to_string(),
                None => format!("{}:{}", file.display(), item.pos.line),
            };
            Ok(InhibitRule {
                name,
                source_matchers: matchers(&f, "source_matchers", what)?,
                target_matchers: matchers(&f, "target_matchers", what)?,
                equal: names(&f, "equal", what)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect(),
            })
        })();
        match rule {
            Ok(r) => out.push(r),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn doc(text: &str) -> Node {
        yaml::parse(text).unwrap()
    }

    const TEAM: &str = r##"team: platform
grouping:
  group_by: [alertname, InstanceId]
  group_wait: 45s
  group_interval: 10m
  repeat_interval: 3h
  send_resolved: false
receivers:
  - name: slack
    target: "#cloudmart-platform"
  - email
"##;

    #[test]
    fn a_team_file_compiles() {
        let t = compile_team(Path::new("t.yaml"), &doc(TEAM)).unwrap();
        assert_eq!(t.name, "platform");
        assert_eq!(t.grouping.group_by, vec!["alertname", "InstanceId"]);
        assert_eq!(t.grouping.group_wait, 45_000);
        assert_eq!(t.grouping.group_interval, 600_000);
        assert_eq!(t.grouping.repeat_interval, 3 * 3_600_000);
        assert!(!t.grouping.send_resolved);
        assert_eq!(
            t.receivers,
            vec![
                Receiver {
                    name: "slack".into(),
                    target: Some("#cloudmart-platform".into())
                },
                Receiver {
                    name: "email".into(),
                    target: None
                }
            ]
        );
        // Defaults.
        let t = compile_team(Path::new("t.yaml"), &doc("team: data\n")).unwrap();
        assert_eq!(t, Team::default_for("data"));
    }

    /// (replacement in TEAM, expected `line:col`, words in the message)
    #[test]
    fn team_errors_name_line_and_column() {
        for (from, to, at, words) in [
            ("group_wait: 45s", "group_wait: 45", "4:15", "needs a unit"),
            (
                "group_interval: 10m",
                "group_interval: 0s",
                "5:19",
                "at least 1s",
            ),
            (
                "send_resolved: false",
                "send_resolved: nope",
                "7:18",
                "true or false",
            ),
            (
                "repeat_interval",
                "repeat_intervall",
                "6:3",
                "did you mean `repeat_interval`",
            ),
            ("  - email\n", "  - slack\n", "11:5", "listed twice"),
            (
                "[alertname, InstanceId]",
                "[alertname, ...]",
                "3:25",
                "cannot be combined",
            ),
            ("    target:", "    targt:", "10:5", "did you mean `target`"),
            (
                "receivers:\n",
                "rule:\n",
                "8:1",
                "did you mean `rules` (a rule file)",
            ),
        ] {
            let text = TEAM.replace(from, to);
            assert_ne!(text, TEAM, "{from}");
            let e = compile_team(Path::new("t.yaml"), &doc(&text))
                .expect_err(to)
                .to_string();
            assert!(e.starts_with(&format!("t.yaml:{at}: ")), "{to}: {e}");
            assert!(e.contains(words), "{to}: {e}");
        }
        let e = compile_team(Path::new("t.yaml"), &doc("team: x\nreceivers: []\n")).unwrap_err();
        assert!(e.to_string().contains("nothing would ever be sent"), "{e}");
    }

    const ESCALATING: &str = r##"team: platform
receivers:
  - name: slack
    target: "#cloudmart-platform"
people:
  kim: { email: kim@cloudmart.example, sms: "+821000000001" }
  lee: { email: lee@cloudmart.example, sms: "+821000000002" }
  park: { email: park@cloudmart.example, sms: "+821000000003" }
oncall:
  - name: primary
    people: [kim, lee]
    handoff: "09:00"
    timezone: Asia/Seoul
    length: 1w
    start: 2026-11-23
    overrides:
      - person: park
        from: 2026-11-28T09:00:00+09:00
        to: 2026-11-29T09:00:00+09:00
escalation:
  tiers:
    - after: 0s
      notify:
        - receiver: slack
          target: "#cloudmart-pages"
    - after: 10m
      notify:
        - { receiver: email, oncall: primary }
    - after: 30m
      send_resolved: false
      notify:
        - { receiver: sms, oncall: primary }
        - receiver: webhook
  repeat: 2
  repeat_every: 1h
  reescalate_on_new_alert: true
"##;

    #[test]
    fn a_team_file_with_escalation_and_oncall_compiles() {
        let t = compile_team(Path::new("t.yaml"), &doc(ESCALATING)).unwrap();
        let p = t.escalation.as_ref().unwrap();
        assert_eq!(
            p.tiers.iter().map(|t| t.after).collect::<Vec<_>>(),
            vec![0, 600_000, 1_800_000]
        );
        assert_eq!(
            p.tiers[0].targets,
            vec![TierTarget {
                receiver: "slack".into(),
                to: To::Target("#cloudmart-pages".into())
            }]
        );
        assert_eq!(p.tiers[1].targets[0].to, To::OnCall("primary".into()));
        assert_eq!(p.tiers[2].targets[1].to, To::Receiver);
        assert!(p.tiers[1].send_resolved, "defaults to the team's");
        assert!(!p.tiers[2].send_resolved);
        assert_eq!((p.repeat, p.repeat_every), (2, 3_600_000));
        assert!(p.reescalate_on_new_alert);
        let r = &t.oncall["primary"];
        assert_eq!(r.people, vec!["kim", "lee"]);
        assert_eq!(r.length_days, 7);
        assert_eq!(r.timezone, chrono_tz::Asia::Seoul);
        assert_eq!(r.overrides[0].to - r.overrides[0].from, 86_400_000);
        assert_eq!(t.people["kim"].contacts["sms"], "+821000000001");
        // Who is paged: park by the override on 2026-11-28 (KST).
        let (_, to, who) = t
            .resolve(&p.tiers[2].targets[0], 1_795_870_800_000)
            .unwrap();
        assert_eq!(
            (to.as_deref(), who.as_deref()),
            (Some("+821000000003"), Some("park"))
        );
        // It round-trips through JSON (the snapshot carries no team, but
        // the API shows it).
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Team>(&json).unwrap(), t);
    }

    /// (replacement in ESCALATING, expected `line:col`, words in the message)
    #[test]
    fn escalation_errors_name_line_and_column() {
        for (from, to, at, words) in [
            (
                "after: 10m",
                "after: 0s",
                "26:14",
                "later than the tier before",
            ),
            ("after: 10m", "after: 10", "26:14", "needs a unit"),
            (
                "oncall: primary }\n    - after: 30m",
                "oncall: primry }\n    - after: 30m",
                "28:38",
                "did you mean `primary`",
            ),
            (
                "{ receiver: sms, oncall: primary }",
                "{ receiver: pager, oncall: primary }",
                "32:38",
                "`kim` (rotation `primary`) has no `pager` contact",
            ),
            (
                "people: [kim, lee]",
                "people: [kim, lea]",
                "11:19",
                "did you mean `lee`",
            ),
            (
                "      - person: park",
                "      - person: choi",
                "17:17",
                "unknown person `choi`",
            ),
            ("length: 1w", "length: 7h", "14:13", "whole days or weeks"),
            (
                "timezone: Asia/Seoul",
                "timezone: Asia/Seol",
                "13:15",
                "did you mean `Asia/Seoul`",
            ),
            (
                "start: 2026-11-23",
                "start: 23.11.2026",
                "15:12",
                "YYYY-MM-DD",
            ),
            ("handoff: \"09:00\"", "handoff: \"9am\"", "12:14", "HH:MM"),
            (
                "to: 2026-11-29T09:00:00+09:00",
                "to: 2026-11-27T09:00:00+09:00",
                "19:13",
                "after `from`",
            ),
            (
                "repeat_every: 1h",
                "repeat_every: 20m",
                "35:17",
                "longer than the last tier",
            ),
            ("  repeat_every: 1h\n", "", "34:11", "needs `repeat_every`"),
            ("repeat: 2", "repeat: two", "34:11", "0 to 100"),
            (
                "target: \"#cloudmart-pages\"",
                "target: \"#x\"\n          oncall: primary",
                "26:19",
                "not both",
            ),
            (
                "reescalate_on_new_alert",
                "reescalate_on_new_alerts",
                "36:3",
                "did you mean `reescalate_on_new_alert`",
            ),
            (
                "      notify:\n        - { receiver: email",
                "      notfy:\n        - { receiver: email",
                "27:7",
                "did you mean `notify`",
            ),
            (
                "sms: \"+821000000002\"",
                "sms: [1]",
                "7:45",
                "contact point",
            ),
        ] {
            let text = ESCALATING.replacen(from, to, 1);
            assert_ne!(text, ESCALATING, "{from}");
            let e = compile_team(Path::new("t.yaml"), &doc(&text))
                .expect_err(to)
                .to_string();
            assert!(e.starts_with(&format!("t.yaml:{at}: ")), "{to}: {e}");
            assert!(e.contains(words), "{to}: {e}");
        }
    }

    #[test]
    fn a_routes_file_compiles_and_checks_matchers() {
        let text = r#"routes:
  - team: payments
    matchers: ['service=~"payments.*"']
  - team: dba
    matchers: ['alertname=~"CloudMart-RDS-.*"', 'severity="critical"']
"#;
        let routes = compile_routes(Path::new("r.yaml"), &doc(text)).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].team, "payments");
        assert_eq!(routes[0].source, "r.yaml:2");
        assert_eq!(routes[1].matchers[1].to_string(), r#"severity="critical""#);
        let bad = text.replace(r#"'service=~"payments.*"'"#, r#"'service=~"(payments"'"#);
        let e = compile_routes(Path::new("r.yaml"), &doc(&bad)).unwrap_err();
        assert!(e[0].to_string().starts_with("r.yaml:3:26: "), "{}", e[0]);
        let bad = text.replace("  - team: dba\n", "  - tem: dba\n");
        let e = compile_routes(Path::new("r.yaml"), &doc(&bad)).unwrap_err();
        assert!(e[0].to_string().starts_with("r.yaml:4:5: "), "{}", e[0]);
        assert!(e[0].to_string().contains("did you mean `team`"), "{}", e[0]);
    }

    const SILENCES: &str = r#"silences:
  - matchers: ['alertname="CloudMart-EC2-HighCPU"', 'InstanceId=~"i-0b.*"']
    start: 2026-11-28T13:00:00Z
    end: 2026-11-28T15:00:00+00:00
    created_by: kim
    comment: kernel patching
  - id: redis-maintenance
    every: [sunday]
    from: "02:00"
    to: "04:00"
    timezone: Asia/Seoul
    matchers: ['alertname="CloudMart-Redis-LowMemory"']
    comment: weekly Redis maintenance
"#;

    #[test]
    fn a_silence_file_compiles() {
        let (s, w) = compile_silences(Path::new("s.yaml"), &doc(SILENCES)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(w.len(), 1);
        assert_eq!(s[0].starts_at, 1_795_870_800_000);
        assert_eq!(s[0].ends_at - s[0].starts_at, 2 * 3_600_000);
        assert_eq!(s[0].matchers[1].to_string(), r#"InstanceId=~"i-0b.*""#);
        assert!(s[0].id.starts_with("s-"), "{}", s[0].id);
        assert_eq!(w[0].id, "redis-maintenance");
        assert_eq!(w[0].every, vec![chrono::Weekday::Sun]);
        assert_eq!(w[0].timezone, chrono_tz::Asia::Seoul);
        assert_eq!(w[0].created_by, "s.yaml", "defaults to the file");
        // The id of an unnamed silence is stable across loads.
        let (again, _) = compile_silences(Path::new("s.yaml"), &doc(SILENCES)).unwrap();
        assert_eq!(again[0].id, s[0].id);
    }

    #[test]
    fn silence_errors_name_line_and_column() {
        for (from, to, at, words) in [
            (
                r#"'InstanceId=~"i-0b.*"'"#,
                r#"'InstanceId~"i-0b.*"'"#,
                "2:64",
                "expected one of",
            ),
            (
                "end: 2026-11-28T15:00:00+00:00",
                "end: 2026-11-28T12:00:00Z",
                "4:10",
                "after `start`",
            ),
            (
                "start: 2026-11-28T13:00:00Z",
                "start: tomorrow",
                "3:12",
                "RFC 3339",
            ),
            (
                "every: [sunday]",
                "every: [sundy]",
                "8:13",
                "did you mean `sunday`",
            ),
            (
                "timezone: Asia/Seoul",
                "timezone: Asia/Seol",
                "11:15",
                "did you mean `Asia/Seoul`",
            ),
            (r#"to: "04:00""#, r#"to: "4pm""#, "10:9", "HH:MM"),
            (r#"to: "04:00""#, r#"to: "02:00""#, "10:9", "same time"),
            ("    created_by: kim\n", "", "2:5", "created_by"),
            (
                "    comment: kernel patching\n",
                "    from: \"01:00\"\n    comment: x\n",
                "6:11",
                "needs `every:`",
            ),
            (
                r#"['alertname="CloudMart-Redis-LowMemory"']"#,
                r#"['alertname=~".*"']"#,
                "12:15",
                "silence every alert",
            ),
        ] {
            let text = SILENCES.replace(from, to);
            assert_ne!(text, SILENCES, "{from}");
            let errs = compile_silences(Path::new("s.yaml"), &doc(&text)).expect_err(to);
            let e = errs[0].to_string();
            assert!(e.starts_with(&format!("s.yaml:{at}: ")), "{to}: {e}");
            assert!(e.contains(words), "{to}: {e}");
        }
    }

    #[test]
    fn an_inhibit_file_compiles_and_checks_matchers() {
        let text = r#"inhibit_rules:
  - name: api-errors
    source_matchers: ['alertname="CloudMart-API-ErrorRate"']
    target_matchers: ['alertname="CloudMart-ErrorLogs"']
    equal: [service]
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
"#;
        let rules = compile_inhibit(Path::new("i.yaml"), &doc(text)).unwrap();
        assert_eq!(rules[0].name, "api-errors");
        assert_eq!(rules[0].equal, vec!["service"]);
        assert_eq!(rules[1].name, "i.yaml:6", "unnamed: where it is written");
        assert!(rules[1].equal.is_empty());
        let bad = text.replace("target_matchers: ['severity", "target_matcher: ['severity");
        let e = compile_inhibit(Path::new("i.yaml"), &doc(&bad)).unwrap_err();
        assert!(e[0].to_string().starts_with("i.yaml:7:5: "), "{}", e[0]);
        assert!(e[0].to_string().contains("did you mean `target_matchers`"));
        let bad = text.replace(r#"'severity="critical"'"#, r#"'severity=~"(critical"'"#);
        let e = compile_inhibit(Path::new("i.yaml"), &doc(&bad)).unwrap_err();
        assert!(e[0].to_string().starts_with("i.yaml:6:34: "), "{}", e[0]);
        assert!(
            e[0].to_string().contains("bad regular expression"),
            "{}",
            e[0]
        );
    }
}
