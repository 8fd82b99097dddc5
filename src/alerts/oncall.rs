//! On-call rotations: who is on call at a given instant.
//!
//! A rotation is an ordered list of people who take turns. Each turn (a
//! *shift*) is a whole number of days long and is handed over at a time of
//! day on the wall clock of the rotation's time zone, so a 09:00
//! Europe/Berlin handoff stays at 09:00 local time across a DST change
//! (that shift is 23 or 25 hours long). The first shift starts at `start`
//! (a local date) at `handoff` and belongs to the first person.
//!
//! **Overrides** put someone else on call from one instant to another (a
//! swap, a sick day). When several overlap, the one listed last wins.
//!
//! Handoffs at a wall time that does not exist (inside a spring-forward
//! gap) happen at the end of the gap; at a wall time that happens twice
//! (fall back), at its first occurrence.
//!
//! People are defined once per team (`people:` in the team file) with a
//! contact point per receiver (`email: kim@x`, `sms: "+8210…"`); a
//! rotation lists their names.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::rfc3339;
use super::silence::TimeOfDay;
use crate::model::Millis;

/// Someone who can be on call, with a contact point per receiver name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    /// receiver name → target in that receiver (`email` → `kim@x`).
    pub contacts: BTreeMap<String, String>,
}

/// Someone else on call for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub person: String,
    #[serde(with = "rfc3339")]
    pub from: Millis,
    #[serde(with = "rfc3339")]
    pub to: Millis,
}

/// A rotation: people taking turns of `length_days` days, handed over at
/// `handoff` local time in `timezone`, starting at `start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub name: String,
    /// Names of [`Person`]s of the team, in turn order (never empty).
    pub people: Vec<String>,
    pub handoff: TimeOfDay,
    pub timezone: Tz,
    /// Days per shift (1 = daily, 7 = weekly); at least 1.
    pub length_days: u32,
    /// The local date of the first handoff (to `people[0]`).
    #[serde(with = "date")]
    pub start: NaiveDate,
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// `YYYY-MM-DD` (chrono's serde feature is not enabled).
mod date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Who is on call, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnCall<'a> {
    pub person: &'a str,
    /// Set when an override put them there.
    pub overridden: bool,
    /// The instant of the next handoff of the regular rotation.
    pub until: Millis,
}

impl Rotation {
    /// The instant of the handoff on local date `date`.
    pub fn handoff_at(&self, date: NaiveDate) -> Millis {
        let m = u32::from(self.handoff.minutes());
        // 24:00 is midnight of the next day.
        let (date, m) = if m == 24 * 60 {
            (date + Days::new(1), 0)
        } else {
            (date, m)
        };
        let time = NaiveTime::from_hms_opt(m / 60, m % 60, 0).expect("checked minutes");
        let local = date.and_time(time);
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(t) => t.timestamp_millis(),
            LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
            LocalResult::None => {
                // In a DST gap: the first instant after it. Gaps are at most
                // a few hours; step forward a minute at a time.
                let mut probe = local;
                loop {
                    probe += chrono::Duration::minutes(1);
                    if let Some(t) = self.timezone.from_local_datetime(&probe).earliest() {
                        return t.timestamp_millis();
                    }
                }
            }
        }
    }

    /// The local date whose handoff started the shift running at `now`
    /// (the handoff of that date is at or before `now`).
    fn shift_date(&self, now: Millis) -> NaiveDate {
        let utc = DateTime::from_timestamp_millis(now).unwrap_or_default();
        let mut date = utc.with_timezone(&self.timezone).date_naive();
        // At most two steps: the handoff of `date` may be after `now`, and
        // with a 24:00 handoff even the day before's may be.
        while self.handoff_at(date) > now {
            date = date.pred_opt().expect("in range");
        }
        date
    }

    /// The regular rotation's person at `now` (overrides aside), and when
    /// their shift ends.
    pub fn scheduled(&self, now: Millis) -> (&str, Millis) {
        let date = self.shift_date(now);
        let days = (date - self.start).num_days();
        let len = i64::from(self.length_days.max(1));
        let shift = days.div_euclid(len);
        let who = shift.rem_euclid(self.people.len() as i64) as usize;
        let days_left = len - days.rem_euclid(len);
        let next = date + Days::new(days_left as u64);
        (&self.people[who], self.handoff_at(next))
    }

    /// Who is on call at `now`.
    pub fn on_call(&self, now: Millis) -> OnCall<'_> {
        let (person, until) = self.scheduled(now);
        match self
            .overrides
            .iter()
            .rev()
            .find(|o| o.from <= now && now < o.to)
        {
            Some(o) => OnCall {
                person: &o.person,
                overridden: true,
                until: until.min(o.to),
            },
            None => OnCall {
                person,
                overridden: false,
                until,
            },
        }
    }

    /// Every person the rotation can page (its people and overrides).
    pub fn everyone(&self) -> impl Iterator<Item = &str> {
        self.people
            .iter()
            .map(String::as_str)
            .chain(self.overrides.iter().map(|o| o.person.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::at;

    fn rotation(tz: Tz, handoff: &str, days: u32, start: &str) -> Rotation {
        Rotation {
            name: "primary".into(),
            people: vec!["kim".into(), "lee".into(), "park".into()],
            handoff: TimeOfDay::parse(handoff).unwrap(),
            timezone: tz,
            length_days: days,
            start: start.parse().unwrap(),
            overrides: Vec::new(),
        }
    }

    /// A weekly rotation handed over Mondays 09:00 Asia/Seoul (00:00 UTC):
    /// the handoff is at local time, so in UTC it is on Monday 00:00, and
    /// a Sunday evening UTC is already Monday in Seoul.
    #[test]
    fn weekly_handoff_on_the_local_clock_across_a_zone_boundary() {
        let r = rotation(chrono_tz::Asia::Seoul, "09:00", 7, "2026-11-23");
        let who = |t: &str| r.on_call(at(t)).person.to_string();
        assert_eq!(who("2026-11-23T00:00:00Z"), "kim", "the first handoff");
        assert_eq!(
            who("2026-11-22T23:59:59Z"),
            "park",
            "before it: the turn before"
        );
        assert_eq!(
            who("2026-11-29T23:59:59Z"),
            "kim",
            "Sunday UTC, Monday 08:59 KST"
        );
        assert_eq!(who("2026-11-30T00:00:00Z"), "lee", "Monday 09:00 KST");
        assert_eq!(who("2026-12-07T00:00:00Z"), "park");
        assert_eq!(who("2026-12-14T00:00:00Z"), "kim", "round again");
        let oc = r.on_call(at("2026-11-25T12:00:00Z"));
        assert_eq!(oc.until, at("2026-11-30T00:00:00Z"));
        assert!(!oc.overridden);
    }

    /// A daily 09:00 Europe/Berlin handoff across the end of summer time
    /// (2026-10-25, 03:00 CEST → 02:00 CET): 07:00 UTC before, 08:00 UTC
    /// after; the shift across the change is 25 hours long.
    #[test]
    fn daily_handoff_keeps_local_time_across_a_dst_change() {
        let r = rotation(chrono_tz::Europe::Berlin, "09:00", 1, "2026-10-23");
        let who = |t: &str| r.on_call(at(t)).person.to_string();
        assert_eq!(who("2026-10-24T06:59:59Z"), "kim");
        assert_eq!(who("2026-10-24T07:00:00Z"), "lee", "09:00 CEST");
        let oc = r.on_call(at("2026-10-24T07:00:00Z"));
        assert_eq!(
            oc.until,
            at("2026-10-25T08:00:00Z"),
            "09:00 CET: a 25-hour shift"
        );
        assert_eq!(who("2026-10-25T07:30:00Z"), "lee", "08:30 CET, still lee");
        assert_eq!(who("2026-10-25T08:00:00Z"), "park", "09:00 CET");
        // And back in spring (2027-03-28, 02:00 CET → 03:00 CEST): a
        // 23-hour shift.
        assert_eq!(
            r.handoff_at("2027-03-28".parse().unwrap())
                - r.handoff_at("2027-03-27".parse().unwrap()),
            23 * 3_600_000
        );
    }

    /// A handoff at a wall time that does not exist happens at the end of
    /// the gap; one that happens twice, at its first occurrence.
    #[test]
    fn handoff_inside_a_dst_gap_or_overlap() {
        let r = rotation(chrono_tz::Europe::Berlin, "02:30", 1, "2027-03-01");
        assert_eq!(
            r.handoff_at("2027-03-28".parse().unwrap()),
            at("2027-03-28T01:00:00Z"),
            "03:00 CEST, the end of the gap"
        );
        assert_eq!(
            r.handoff_at("2026-10-25".parse().unwrap()),
            at("2026-10-25T00:30:00Z"),
            "02:30 CEST, the first of the two"
        );
        // The shift does not flip back during the repeated hour.
        let date = "2026-10-25";
        let p1 = r
            .on_call(at(&format!("{date}T00:45:00Z")))
            .person
            .to_string();
        let p2 = r
            .on_call(at(&format!("{date}T01:45:00Z")))
            .person
            .to_string();
        assert_eq!(p1, p2, "02:45 CEST and 02:45 CET are the same shift");
    }

    #[test]
    fn overrides_win_for_their_period_and_the_last_listed_wins() {
        let mut r = rotation(chrono_tz::Asia::Seoul, "09:00", 7, "2026-11-23");
        r.overrides = vec![
            Override {
                person: "choi".into(),
                from: at("2026-11-25T00:00:00Z"),
                to: at("2026-11-26T00:00:00Z"),
            },
            Override {
                person: "park".into(),
                from: at("2026-11-25T12:00:00Z"),
                to: at("2026-11-25T18:00:00Z"),
            },
        ];
        let oc = |t: &str| {
            let o = r.on_call(at(t));
            (o.person.to_string(), o.overridden, o.until)
        };
        assert_eq!(oc("2026-11-24T23:59:59Z").0, "kim");
        assert_eq!(
            oc("2026-11-25T00:00:00Z"),
            ("choi".into(), true, at("2026-11-26T00:00:00Z"))
        );
        assert_eq!(oc("2026-11-25T12:00:00Z").0, "park", "listed last");
        assert_eq!(oc("2026-11-25T18:00:00Z").0, "choi");
        assert_eq!(
            oc("2026-11-26T00:00:00Z"),
            ("kim".into(), false, at("2026-11-30T00:00:00Z"))
        );
        let everyone: Vec<&str> = r.everyone().collect();
        assert_eq!(everyone, ["kim", "lee", "park", "choi", "park"]);
    }
}
