//! Escalation: who is paged about an incident, and when, until someone
//! acknowledges it or it resolves.
//!
//! A team's [`Policy`] is an ordered list of tiers. Each tier has an
//! `after` delay and targets (a receiver and where in it: a channel, an
//! address, or whoever is on call in a [rotation](super::oncall)). With
//! `repeat: N` the whole list runs N more times, one pass every
//! `repeat_every`.
//!
//! ```text
//!  first notice (start)                    start + repeat_every
//!  │ tier 1 (after 0)                      │ tier 1 again (cycle 1)
//!  │        tier 2 (after 10m)             │        …
//!  ▼────────▼─────────────tier 3 (30m)─────▼──────── … until acked/resolved
//! ```
//!
//! - **Start.** Delays count from the incident's *start*: its first flush
//!   with a firing alert that no silence or inhibition holds back (so
//!   `group_wait` after its first alert). An alert that resolves within
//!   `group_wait`, or that fires only while silenced, pages nobody.
//! - **Steps.** Tier `t` of pass `c` is step `c × tiers + t`, due at
//!   `start + c × repeat_every + after[t]`. The incident's
//!   [`State`] counts the steps taken, so each step is taken exactly once:
//!   a step that came due while klaxon was down is taken at the next tick
//!   after the restore (once, not never, not twice).
//! - **Muted.** A step due while every firing alert of the incident is
//!   silenced or inhibited is skipped (counted, nothing sent).
//! - **Ack** stops the steps. A new firing alert joining an acknowledged
//!   incident does not restart them, unless the policy says
//!   `reescalate_on_new_alert: true`: then the ack is cleared and a new
//!   *round* starts at the incident's next flush, from the first tier.
//! - **Resolve** stops the steps; when the incident ends, every target
//!   already paged whose tier has `send_resolved` gets one resolved notice.
//!
//! Pages are [`Notification`](super::Notification)s with `tier` (0-based)
//! and `cycle` set: kind `firing` for a page, `resolved` for the end.
//! Their ids hash the receiver, target, incident, tier, cycle and round,
//! never the time, so a step retaken after a crash has the same id and a
//! notifier that remembers ids sends it once.

use serde::{Deserialize, Serialize};

use super::rfc3339;
use crate::model::{Fnv, Millis};

/// Where a tier pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum To {
    /// The receiver's own default (no target).
    Receiver,
    /// A fixed target: a channel, an address, a number.
    Target(String),
    /// Whoever is on call in this rotation of the team, at their contact
    /// point for the receiver.
    OnCall(String),
}

/// One target of a tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierTarget {
    pub receiver: String,
    pub to: To,
}

/// One tier of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Delay from the incident's start (ms).
    pub after: Millis,
    pub targets: Vec<TierTarget>,
    /// Whether the targets paged by this tier are told when the incident
    /// resolves (default: the team's `send_resolved`).
    pub send_resolved: bool,
}

/// A team's escalation policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// In order of `after` (ascending), at least one.
    pub tiers: Vec<Tier>,
    /// How many more passes after the first.
    pub repeat: u32,
    /// The length of one pass (ms), longer than the last tier's `after`;
    /// only used when `repeat > 0`.
    pub repeat_every: Millis,
    /// Whether a new alert joining an acknowledged incident clears the
    /// ack and starts the policy again.
    pub reescalate_on_new_alert: bool,
}

impl Policy {
    /// Steps in all passes.
    pub fn steps(&self) -> u32 {
        self.tiers.len() as u32 * (self.repeat + 1)
    }

    /// (tier, cycle, delay from the start) of step `step`.
    pub fn step(&self, step: u32) -> Option<(usize, u32, Millis)> {
        if step >= self.steps() {
            return None;
        }
        let n = self.tiers.len() as u32;
        let (cycle, tier) = (step / n, (step % n) as usize);
        Some((
            tier,
            cycle,
            Millis::from(cycle) * self.repeat_every + self.tiers[tier].after,
        ))
    }
}

/// A target that was paged, for its resolved notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paged {
    pub receiver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub tier: usize,
    pub cycle: u32,
    /// Who it was, when the target came from a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    #[serde(with = "rfc3339")]
    pub at: Millis,
    pub send_resolved: bool,
}

/// An incident's escalation so far (part of the incident, so of the
/// dispatcher's snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When the current round started; `None` until the incident's first
    /// unmuted firing flush (or the next one after a re-escalation).
    #[serde(
        default,
        with = "rfc3339::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<Millis>,
    /// Restarts by `reescalate_on_new_alert` (0 for the first).
    #[serde(default)]
    pub round: u32,
    /// Steps of the current round taken (sent or skipped).
    #[serde(default)]
    pub steps: u32,
    /// Every page sent, across rounds (one per target per step).
    #[serde(default)]
    pub paged: Vec<Paged>,
}

impl State {
    /// Nothing happened yet (serialized incidents leave it out).
    pub fn is_empty(&self) -> bool {
        *self == State::default()
    }

    /// When the next step is due, if the policy has one left.
    pub fn next_due(&self, policy: &Policy) -> Option<Millis> {
        let start = self.started_at?;
        policy.step(self.steps).map(|(_, _, d)| start + d)
    }

    /// Clears the current round so that the policy starts again at the
    /// next flush.
    pub fn restart(&mut self) {
        self.started_at = None;
        self.steps = 0;
        self.round += 1;
    }

    /// The targets to tell of the resolution: distinct (receiver, target)
    /// pairs paged by a tier with `send_resolved`, with the first tier and
    /// the last cycle that paged them.
    pub fn to_resolve(&self) -> Vec<&Paged> {
        let mut out: Vec<&Paged> = Vec::new();
        for p in self.paged.iter().filter(|p| p.send_resolved) {
            match out
                .iter_mut()
                .find(|o| o.receiver == p.receiver && o.target == p.target)
            {
                Some(o) if o.cycle < p.cycle => *o = p,
                Some(_) => {}
                None => out.push(p),
            }
        }
        out
    }
}

/// The deterministic id of a page or of a resolved notice.
pub fn notification_id(
    kind: &str,
    receiver: &str,
    target: Option<&str>,
    incident: &str,
    tier: usize,
    cycle: u32,
    round: u32,
) -> String {
    let mut h = Fnv::default();
    for part in [
        "escalation",
        kind,
        receiver,
        target.unwrap_or(""),
        incident,
        &tier.to_string(),
        &cycle.to_string(),
        &round.to_string(),
    ] {
        h.write_str(part);
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn policy(afters: &[Millis], repeat: u32, every: Millis) -> Policy {
        Policy {
            tiers: afters
                .iter()
                .map(|a| Tier {
                    after: *a,
                    targets: vec![],
                    send_resolved: true,
                })
                .collect(),
            repeat,
            repeat_every: every,
            reescalate_on_new_alert: false,
        }
    }

    #[test]
    fn steps_walk_the_tiers_then_repeat_the_passes() {
        let p = policy(&[0, 10 * MIN, 30 * MIN], 2, 60 * MIN);
        assert_eq!(p.steps(), 9);
        let due: Vec<(usize, u32, Millis)> = (0..10).filter_map(|s| p.step(s)).collect();
        assert_eq!(
            due,
            vec![
                (0, 0, 0),
                (1, 0, 10 * MIN),
                (2, 0, 30 * MIN),
                (0, 1, 60 * MIN),
                (1, 1, 70 * MIN),
                (2, 1, 90 * MIN),
                (0, 2, 120 * MIN),
                (1, 2, 130 * MIN),
                (2, 2, 150 * MIN),
            ]
        );
        let mut s = State::default();
        assert_eq!(s.next_due(&p), None, "not started");
        s.started_at = Some(1_000);
        s.steps = 4;
        assert_eq!(s.next_due(&p), Some(1_000 + 70 * MIN));
        s.steps = 9;
        assert_eq!(s.next_due(&p), None, "all passes done");
        s.restart();
        assert_eq!((s.started_at, s.steps, s.round), (None, 0, 1));
    }

    #[test]
    fn ids_are_stable_and_differ_by_each_part() {
        let id = |k, r, t, i, tier, c, round| notification_id(k, r, t, i, tier, c, round);
        let base = id("firing", "sms", Some("+1"), "inc", 1, 0, 0);
        assert_eq!(base, id("firing", "sms", Some("+1"), "inc", 1, 0, 0));
        for other in [
            id("resolved", "sms", Some("+1"), "inc", 1, 0, 0),
            id("firing", "email", Some("+1"), "inc", 1, 0, 0),
            id("firing", "sms", Some("+2"), "inc", 1, 0, 0),
            id("firing", "sms", None, "inc", 1, 0, 0),
            id("firing", "sms", Some("+1"), "inc2", 1, 0, 0),
            id("firing", "sms", Some("+1"), "inc", 2, 0, 0),
            id("firing", "sms", Some("+1"), "inc", 1, 1, 0),
            id("firing", "sms", Some("+1"), "inc", 1, 0, 1),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn resolved_notices_go_once_per_target_that_asked() {
        let paged = |r: &str, t: &str, tier, cycle, send_resolved| Paged {
            receiver: r.into(),
            target: Some(t.into()),
            tier,
            cycle,
            person: None,
            at: 0,
            send_resolved,
        };
        let s = State {
            started_at: Some(0),
            round: 0,
            steps: 5,
            paged: vec![
                paged("slack", "#team", 0, 0, true),
                paged("email", "kim@x", 1, 0, true),
                paged("sms", "+1", 2, 0, false),
                paged("slack", "#team", 0, 1, true),
            ],
        };
        let r: Vec<(&str, usize, u32)> = s
            .to_resolve()
            .iter()
            .map(|p| (p.receiver.as_str(), p.tier, p.cycle))
            .collect();
        assert_eq!(r, vec![("slack", 0, 1), ("email", 1, 0)]);
    }
}
