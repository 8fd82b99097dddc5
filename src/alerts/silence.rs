//! Silences: one-off ([`Silence`], a time range) and recurring
//! maintenance windows ([`Window`], weekdays and a time of day in an IANA
//! time zone). Both hold back the *firing* alerts their matchers select
//! while they are active; see the dispatcher's doc for what happens to an
//! alert when a silence ends or when it resolves during one.
//!
//! **Windows and daylight saving time.** A window is active while the
//! wall clock of its time zone reads a listed weekday and a time from
//! `from` (inclusive) to `to` (exclusive); `to` before `from` crosses
//! midnight (`22:00`–`02:00` belongs to the day it starts). On a
//! spring-forward night the skipped hour is simply never on the clock
//! (02:00–04:00 Europe/Berlin on 2026-03-29 lasts one real hour, 03:00 to
//! 04:00 CEST); on a fall-back night the repeated hour counts twice
//! (02:00–04:00 on 2026-10-25 lasts three real hours).

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::matcher::{all_match, Matcher};
use super::{rfc3339, Alert, Muter};
use crate::model::Millis;

/// A one-off silence, as Alertmanager has them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    #[serde(with = "rfc3339")]
    pub starts_at: Millis,
    #[serde(with = "rfc3339")]
    pub ends_at: Millis,
    pub created_by: String,
    pub comment: String,
}

/// Where a one-off silence is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl Silence {
    pub fn state(&self, now: Millis) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    pub fn active(&self, now: Millis) -> bool {
        self.state(now) == SilenceState::Active
    }

    /// Ends the silence at `now` (a pending one never starts).
    pub fn expire(&mut self, now: Millis) {
        if now < self.starts_at {
            self.starts_at = now;
        }
        self.ends_at = self.ends_at.min(now);
    }
}

/// A time of day, `HH:MM`, from `00:00` to `24:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Minutes since midnight, at most 24 h.
    pub fn from_minutes(m: u16) -> Option<TimeOfDay> {
        (m <= 24 * 60).then_some(TimeOfDay(m))
    }

    pub fn minutes(self) -> u16 {
        self.0
    }

    /// `HH:MM` (one-digit hours are fine).
    pub fn parse(s: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("a time of day is written HH:MM, from 00:00 to 24:00, not {s:?}");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m >= 60 {
            return Err(bad());
        }
        TimeOfDay::from_minutes(h * 60 + m).ok_or_else(bad)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TimeOfDay::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `sunday`, `mon`, … (any case) → a weekday.
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

mod weekdays {
    use super::*;

    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            days.iter()
                .map(|d| WEEKDAYS[d.num_days_from_monday() as usize]),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                parse_weekday(s)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown weekday {s:?}")))
            })
            .collect()
    }
}

/// A recurring maintenance window: every listed weekday, from `from` to
/// `to` on the wall clock of `timezone`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub id: String,
    pub matchers: Vec<Matcher>,
    #[serde(with = "weekdays")]
    pub every: Vec<Weekday>,
    pub from: TimeOfDay,
    pub to: TimeOfDay,
    pub timezone: Tz,
    pub created_by: String,
    pub comment: String,
}

impl Window {
    /// Whether the window is open at `now` (see the module doc for DST).
    pub fn active(&self, now: Millis) -> bool {
        let Some(utc) = DateTime::from_timestamp_millis(now) else {
            return false;
        };
        let local = utc.with_timezone(&self.timezone);
        let sec = i64::from(local.num_seconds_from_midnight());
        let (from, to) = (
            i64::from(self.from.minutes()) * 60,
            i64::from(self.to.minutes()) * 60,
        );
        let day = local.weekday();
        if from < to {
            self.every.contains(&day) && from <= sec && sec < to
        } else {
            // Crosses midnight: the evening of a listed day, or the early
            // morning after one.
            (self.every.contains(&day) && sec >= from)
                || (self.every.contains(&day.pred()) && sec < to)
        }
    }
}

/// Every silence and window the dispatcher knows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Silences {
    silences: Vec<Silence>,
    windows: Vec<Window>,
}

impl Silences {
    pub fn new(silences: Vec<Silence>, windows: Vec<Window>) -> Self {
        Silences { silences, windows }
    }

    /// Adds a silence, or replaces the one with its id.
    pub fn upsert(&mut self, s: Silence) {
        match self.silences.iter_mut().find(|o| o.id == s.id) {
            Some(o) => *o = s,
            None => self.silences.push(s),
        }
    }

    /// Ends silence `id` at `now`; false when there is no such silence.
    pub fn expire(&mut self, id: &str, now: Millis) -> bool {
        match self.silences.iter_mut().find(|s| s.id == id) {
            Some(s) => {
                s.expire(now);
                true
            }
            None => false,
        }
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Forgets one-off silences that expired more than `retention` ago.
    pub fn gc(&mut self, now: Millis, retention: Millis) {
        self.silences.retain(|s| now - s.ends_at < retention);
    }
}

impl Muter for Silences {
    /// The id of the first active silence or window whose matchers select
    /// the alert.
    fn mutes(&self, alert: &Alert, now: Millis) -> Option<&str> {
        self.silences
            .iter()
            .filter(|s| s.active(now))
            .map(|s| (s.id.as_str(), &s.matchers))
            .chain(
                self.windows
                    .iter()
                    .filter(|w| w.active(now))
                    .map(|w| (w.id.as_str(), &w.matchers)),
            )
            .find(|(_, m)| all_match(m, alert))
            .map(|(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::{alert, at};

    fn matchers(ms: &[&str]) -> Vec<Matcher> {
        ms.iter().map(|m| Matcher::parse(m).unwrap()).collect()
    }

    fn window(days: &[&str], from: &str, to: &str, tz: &str) -> Window {
        Window {
            id: "w".into(),
            matchers: matchers(&[r#"alertname="Redis""#]),
            every: days.iter().map(|d| parse_weekday(d).unwrap()).collect(),
            from: TimeOfDay::parse(from).unwrap(),
            to: TimeOfDay::parse(to).unwrap(),
            timezone: tz.parse().unwrap(),
            created_by: "ops".into(),
            comment: "patching".into(),
        }
    }

    #[test]
    fn a_silence_is_active_from_start_to_end() {
        let mut s = Silence {
            id: "s1".into(),
            matchers: matchers(&[r#"InstanceId=~"i-0.*""#]),
            starts_at: at("2026-11-28T13:00:00Z"),
            ends_at: at("2026-11-28T15:00:00Z"),
            created_by: "kim".into(),
            comment: "patching".into(),
        };
        let cases = [
            ("2026-11-28T12:59:59Z", SilenceState::Pending),
            ("2026-11-28T13:00:00Z", SilenceState::Active),
            ("2026-11-28T14:59:59Z", SilenceState::Active),
            ("2026-11-28T15:00:00Z", SilenceState::Expired),
        ];
        for (t, want) in cases {
            assert_eq!(s.state(at(t)), want, "{t}");
        }
        s.expire(at("2026-11-28T14:00:00Z"));
        assert_eq!(s.state(at("2026-11-28T14:00:00Z")), SilenceState::Expired);
        assert_eq!(s.state(at("2026-11-28T13:59:59Z")), SilenceState::Active);
    }

    /// Every Sunday 02:00–04:00 Asia/Seoul (UTC+9, no DST) is Saturday
    /// 17:00–19:00 UTC.
    #[test]
    fn a_weekly_window_in_seoul() {
        let w = window(&["sunday"], "02:00", "04:00", "Asia/Seoul");
        for (t, want) in [
            ("2026-11-28T16:59:59Z", false),
            ("2026-11-28T17:00:00Z", true), // Sunday 02:00 KST
            ("2026-11-28T18:59:59Z", true),
            ("2026-11-28T19:00:00Z", false), // 04:00 KST
            ("2026-11-29T17:30:00Z", false), // Monday 02:30 KST
            ("2026-11-21T17:30:00Z", true),  // the Sunday before
            ("2026-11-29T02:30:00Z", false), // Sunday 02:30 UTC, 11:30 KST
        ] {
            assert_eq!(w.active(at(t)), want, "{t}");
        }
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_starts() {
        let w = window(&["friday"], "22:00", "02:00", "UTC");
        for (t, want) in [
            ("2026-11-27T21:59:00Z", false), // Friday
            ("2026-11-27T22:00:00Z", true),
            ("2026-11-28T01:59:00Z", true), // Saturday early morning
            ("2026-11-28T02:00:00Z", false),
            ("2026-11-28T22:30:00Z", false), // Saturday evening
            ("2026-11-27T01:00:00Z", false), // Friday early morning
        ] {
            assert_eq!(w.active(at(t)), want, "{t}");
        }
        let all_day = window(&["sat"], "00:00", "24:00", "UTC");
        assert!(all_day.active(at("2026-11-28T23:59:59Z")));
        assert!(!all_day.active(at("2026-11-29T00:00:00Z")));
    }

    /// Europe/Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST; 2026-10-25
    /// 03:00 CEST falls back to 02:00 CET.
    #[test]
    fn windows_follow_the_wall_clock_across_dst() {
        let w = window(&["sunday"], "02:00", "04:00", "Europe/Berlin");
        let active_minutes = |day: &str| {
            let start = at(&format!("{day}T00:00:00Z")) - 3_600_000;
            (0..6 * 60).filter(|m| w.active(start + m * 60_000)).count()
        };
        // Spring forward: 02:00–03:00 never happens; 03:00–04:00 CEST is
        // 01:00–02:00 UTC.
        assert_eq!(active_minutes("2026-03-29"), 60);
        assert!(!w.active(at("2026-03-29T00:59:00Z")));
        assert!(w.active(at("2026-03-29T01:00:00Z")));
        assert!(!w.active(at("2026-03-29T02:00:00Z")));
        // Fall back: 02:00 CEST (00:00 UTC) to 04:00 CET (03:00 UTC).
        assert_eq!(active_minutes("2026-10-25"), 180);
        assert!(w.active(at("2026-10-25T00:00:00Z")));
        assert!(w.active(at("2026-10-25T02:59:00Z")));
        assert!(!w.active(at("2026-10-25T03:00:00Z")));
        // An ordinary winter Sunday: 01:00–03:00 UTC.
        assert_eq!(active_minutes("2026-11-29"), 120);
        assert!(w.active(at("2026-11-29T01:00:00Z")));
    }

    #[test]
    fn silences_mute_only_matching_alerts_while_active() {
        let mut s = Silences::new(
            vec![Silence {
                id: "patch-b".into(),
                matchers: matchers(&[
                    r#"alertname="CloudMart-EC2-HighCPU""#,
                    r#"InstanceId=~"i-0b.*""#,
                ]),
                starts_at: at("2026-11-28T13:00:00Z"),
                ends_at: at("2026-11-28T15:00:00Z"),
                created_by: "kim".into(),
                comment: "kernel patching".into(),
            }],
            vec![window(&["sunday"], "02:00", "04:00", "Asia/Seoul")],
        );
        let b = alert("CloudMart-EC2-HighCPU", &[("InstanceId", "i-0b2")]);
        let a = alert("CloudMart-EC2-HighCPU", &[("InstanceId", "i-0a1")]);
        let redis = alert("Redis", &[]);
        let t = at("2026-11-28T14:00:00Z");
        assert_eq!(s.mutes(&b, t), Some("patch-b"));
        assert_eq!(s.mutes(&a, t), None);
        assert_eq!(s.mutes(&b, at("2026-11-28T15:00:00Z")), None);
        assert_eq!(s.mutes(&redis, t), None);
        assert_eq!(s.mutes(&redis, at("2026-11-28T17:30:00Z")), Some("w"));
        assert!(s.expire("patch-b", at("2026-11-28T13:30:00Z")));
        assert_eq!(s.mutes(&b, t), None, "expired early");
        assert!(!s.expire("nope", t));
        s.gc(at("2026-11-30T00:00:00Z"), 86_400_000);
        assert!(s.silences().is_empty());
        assert_eq!(s.windows().len(), 1, "windows are config, never collected");
    }

    #[test]
    fn silences_and_windows_round_trip_through_json() {
        let s = Silences::new(
            vec![Silence {
                id: "s".into(),
                matchers: matchers(&[r#"a=~"x|y""#]),
                starts_at: at("2026-11-28T13:00:00Z"),
                ends_at: at("2026-11-28T15:00:00Z"),
                created_by: "kim".into(),
                comment: "c".into(),
            }],
            vec![window(&["sunday", "wed"], "22:30", "01:00", "Asia/Seoul")],
        );
        let json = serde_json::to_string(&s).unwrap();
        for part in [
            r#""every":["sunday","wednesday"]"#,
            r#""from":"22:30""#,
            r#""timezone":"Asia/Seoul""#,
            r#""starts_at":"2026-11-28T13:00:00Z""#,
            r#""matchers":["a=~\"x|y\""]"#,
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
        let back: Silences = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("02:00").unwrap().minutes(), 120);
        assert_eq!(TimeOfDay::parse("9:05").unwrap().to_string(), "09:05");
        assert_eq!(TimeOfDay::parse("24:00").unwrap().minutes(), 1440);
        for bad in ["24:01", "2", "02:60", "02:0", "ab:cd", ""] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad}");
        }
    }
}
