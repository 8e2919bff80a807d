//! Unit tests of the traffic generator.

use super::*;

fn small() -> Scenario {
    Scenario {
        days: 1,
        ..Scenario::demo()
    }
}

#[test]
fn same_seed_same_traffic() {
    let collect = |s: &Scenario| {
        let mut v = Vec::new();
        s.generate(|t, svc, g, sig, c| v.push((t, svc.to_string(), g.to_string(), sig, c)));
        v
    };
    assert_eq!(collect(&small()), collect(&small()));
    let other = Scenario { seed: 1, ..small() };
    assert_ne!(collect(&small()), collect(&other));
}

#[test]
fn nights_are_quieter_than_mornings_and_weekends_quieter_than_weekdays() {
    assert!(daily_shape(4.0, false) < 0.15);
    assert!(daily_shape(10.0, false) > 0.9);
    assert!(daily_shape(10.0, true) < daily_shape(10.0, false));
    // The morning rise is steep: 06:00 → 09:00 more than quadruples.
    assert!(daily_shape(9.0, false) > 4.0 * daily_shape(6.0, false));
}

#[test]
fn outages_multiply_only_their_service_geos_and_window() {
    let s = Scenario::demo();
    let o = &s.outages[0];
    let (geo, from, to) = o.geos[0];
    let tg = &s.services[0];
    let p = tg.presence.iter().find(|p| p.geo == geo).unwrap();
    let normal = Scenario::normal(6);
    let mid = from + (to - from) / 2;
    let ratio = s.rate("telegram", p, Signal::Complaints, mid)
        / normal.rate("telegram", p, Signal::Complaints, mid);
    assert!((ratio - o.complaints_factor).abs() < 1e-9);
    let before = from - HOUR_MS;
    assert_eq!(
        s.rate("telegram", p, Signal::Complaints, before),
        normal.rate("telegram", p, Signal::Complaints, before)
    );
    let lib = &s.services[1];
    let lp = lib.presence.iter().find(|p| p.geo == geo).unwrap();
    assert_eq!(
        s.rate("libero-mail", lp, Signal::Complaints, mid),
        normal.rate("libero-mail", lp, Signal::Complaints, mid)
    );
}

#[test]
fn expands_counts_into_valid_wire_events() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let ev = expand_events(
        &mut rng,
        DEMO_START_MS,
        MINUTE_MS,
        "telegram",
        "IT-RM",
        Signal::Mentions,
        5,
    );
    assert_eq!(ev.len(), 5);
    for e in &ev {
        let ts = e.ts().millis();
        assert!((DEMO_START_MS..DEMO_START_MS + MINUTE_MS).contains(&ts));
        let json = match e {
            InputEvent::Mention(m) => serde_json::to_vec(m).unwrap(),
            InputEvent::Complaint(c) => serde_json::to_vec(c).unwrap(),
        };
        crate::event::decode_any(&json).unwrap();
    }
    let c = expand_events(
        &mut rng,
        DEMO_START_MS,
        MINUTE_MS,
        "libero-mail",
        "IT",
        Signal::Complaints,
        7,
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].amount(), 7.0);
}
