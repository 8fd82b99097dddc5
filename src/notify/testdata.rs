//! A sample notification for tests (here and in `integration-tests`).

use crate::alerts::{Alert, Kind, Notification, NotifiedAlerts, Status};
use crate::model::{AlarmState, Ordered};

/// CloudMart-EC2-HighCPU on i-0abc for team platform, firing or resolved.
pub fn alert(status: Status) -> Alert {
    Alert {
        fingerprint: "fp-i-0abc".into(),
        rule: "CloudMart-EC2-HighCPU".into(),
        team: "platform".into(),
        labels: Ordered(vec![
            ("alertname".into(), "CloudMart-EC2-HighCPU".into()),
            ("InstanceId".into(), "i-0abc".into()),
            ("team".into(), "platform".into()),
            ("severity".into(), "critical".into()),
        ]),
        status,
        state: match status {
            Status::Firing => AlarmState::Alarm,
            Status::Resolved => AlarmState::Ok,
        },
        starts_at: 1_767_225_600_000,
        ends_at: (status == Status::Resolved).then_some(1_767_226_200_000),
        summary: "CPU 97.5% on i-0abc".into(),
        values: Ordered(vec![("cpu".into(), 97.5), ("threshold".into(), 90.0)]),
        runbook: Some("https://runbooks.example/ec2-high-cpu".into()),
        change: "c1".into(),
        updated_at: 1_767_225_600_000,
        silenced_by: None,
        inhibited_by: None,
    }
}

/// A notification of `kind` about [`alert`] to receiver `slack`.
pub fn notification(kind: Kind) -> Notification {
    let alerts = match kind {
        Kind::Resolved => NotifiedAlerts {
            firing: vec![],
            resolved: vec![alert(Status::Resolved)],
        },
        _ => NotifiedAlerts {
            firing: vec![alert(Status::Firing)],
            resolved: vec![],
        },
    };
    Notification {
        id: format!("n-{}", kind.as_str()),
        receiver: "slack".into(),
        target: None,
        team: "platform".into(),
        incident: "inc-42".into(),
        group: Ordered(vec![
            ("alertname".into(), "CloudMart-EC2-HighCPU".into()),
            ("InstanceId".into(), "i-0abc".into()),
        ]),
        kind,
        at: 1_767_225_630_000,
        alerts,
        tier: None,
        cycle: None,
        person: None,
    }
}
