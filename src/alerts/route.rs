//! Routing: which team an alert goes to.
//!
//! By default an alert goes to the team of its rule file (`team:`). A
//! routes file (`routes:`, by convention `rules/routes.yaml`) can send
//! alerts whose labels match elsewhere: the **first** route whose matchers
//! all match wins; no match keeps the rule's team. Matchers see the
//! alert's labels as the rule set them (`alertname`, the rule's `group_by`
//! labels, `team` = the rule's team, `severity`).
//!
//! A routed alert's `team` (field and label) is the route's team, so its
//! incident, grouping, receivers and escalation are that team's. The
//! alerts topic is keyed by the same incident ([`DispatchConfig::incident_key`]),
//! so one consumer sees every alert of an incident.

use serde::{Deserialize, Serialize};

use super::group::group_of;
use super::matcher::{all_match, Labels, Matcher};
use super::{Alert, DispatchConfig, Team};
use crate::model::StateChange;

/// A route: alerts matching every matcher go to `team`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub team: String,
    pub matchers: Vec<Matcher>,
    /// Where it is written (`file:line`), for `klaxon routes test`.
    #[serde(default)]
    pub source: String,
}

/// The first route that matches `labels`.
pub fn matching<'a>(routes: &'a [Route], labels: &(impl Labels + ?Sized)) -> Option<&'a Route> {
    routes.iter().find(|r| all_match(&r.matchers, labels))
}

/// The firing alert of an `alarm` change, sent to its routed team.
pub fn alert_for(routes: &[Route], change: &StateChange) -> Alert {
    let mut alert = Alert::firing(change);
    if let Some(r) = matching(routes, &alert.labels) {
        if r.team != alert.team {
            alert.team.clone_from(&r.team);
            for (k, v) in &mut alert.labels.0 {
                if k == "team" {
                    v.clone_from(&r.team);
                }
            }
        }
    }
    alert
}

impl DispatchConfig {
    /// The team of an alert with these labels: the first matching route's,
    /// or `None` (the rule's own team).
    pub fn team_for(&self, labels: &(impl Labels + ?Sized)) -> Option<&str> {
        matching(&self.routes, labels).map(|r| r.team.as_str())
    }

    /// The alert a change fires, routed (what the dispatcher stores).
    pub fn alert(&self, change: &StateChange) -> Alert {
        alert_for(&self.routes, change)
    }

    /// A team's settings, or the defaults for a team without a file.
    pub fn team(&self, name: &str) -> Team {
        self.teams
            .get(name)
            .cloned()
            .unwrap_or_else(|| Team::default_for(name))
    }

    /// The incident key of a change: its routed team and that team's
    /// `group_by`, exactly as the dispatcher groups it. The alerts topic
    /// is keyed by this.
    pub fn incident_key(&self, change: &StateChange) -> String {
        let alert = self.alert(change);
        let team = self.teams.get(&alert.team);
        match team {
            Some(t) => group_of(&alert, &t.grouping).0,
            None => group_of(&alert, &Team::default_for(&alert.team).grouping).0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::change;
    use crate::model::AlarmState;

    fn route(team: &str, ms: &[&str]) -> Route {
        Route {
            team: team.into(),
            matchers: ms.iter().map(|m| Matcher::parse(m).unwrap()).collect(),
            source: String::new(),
        }
    }

    #[test]
    fn first_matching_route_wins_and_no_match_keeps_the_rules_team() {
        let config = DispatchConfig {
            routes: vec![
                route("payments", &[r#"service=~"payments.*""#]),
                route("dba", &[r#"service=~"pay.*""#, r#"severity="critical""#]),
                route("edge", &[r#"alertname="LB""#, r#"service!~"int-.*""#]),
            ],
            ..Default::default()
        };
        let c =
            |rule: &str, service: &str| change(rule, &[("service", service)], AlarmState::Alarm, 0);
        let a = config.alert(&c("API", "payments-api"));
        assert_eq!(a.team, "payments");
        assert_eq!(
            a.labels.get("team").unwrap(),
            "payments",
            "the label follows"
        );
        assert_eq!(
            config.alert(&c("API", "payroll")).team,
            "platform",
            "warning, not critical"
        );
        assert_eq!(config.alert(&c("LB", "web")).team, "edge");
        assert_eq!(config.alert(&c("LB", "int-web")).team, "platform", "!~");
        assert_eq!(config.alert(&c("API", "cart")).team, "platform");
        let labels: &[(&str, &str)] = &[("service", "payments-x")];
        assert_eq!(config.team_for(labels), Some("payments"));
        assert_eq!(config.team_for(&[("service", "cart")][..]), None);
    }

    /// The alerts-topic key and the dispatcher's incident agree for a
    /// routed alert: both use the route's team and its group_by.
    #[test]
    fn incident_key_follows_the_route() {
        let mut config = DispatchConfig {
            routes: vec![route("payments", &[r#"service=~"payments.*""#])],
            ..Default::default()
        };
        let mut pay = Team::default_for("payments");
        pay.grouping.group_by = vec!["service".into()];
        config.teams.insert("payments".into(), pay);
        let c = change("API", &[("service", "payments-api")], AlarmState::Alarm, 0);
        let key = config.incident_key(&c);
        assert!(key.starts_with("payments/"), "{key}");
        let mut d = crate::alerts::Dispatcher::new(config.clone());
        d.ingest(&c, 0);
        let inc = d.incidents().next().unwrap();
        assert_eq!(inc.key, key);
        assert_eq!(inc.team, "payments");
        // Another rule of the same service: the same incident (group_by service).
        let c2 = change(
            "Latency",
            &[("service", "payments-api")],
            AlarmState::Alarm,
            0,
        );
        assert_eq!(config.incident_key(&c2), key);
    }
}
