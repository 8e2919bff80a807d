//! Delivery itself, with the generic JSON format: each outage event reaches the webhook once
//! and in order (and not again when handed over a second time), failed requests are retried a
//! bounded number of times, a receiver that never answers holds up neither the sender nor
//! shutdown, and the filters admit an outage from its first matching event on.

use std::time::{Duration, Instant};

use spikewatch::config::Secs;
use spikewatch::event::{IncidentState, OutageEvent, Severity};
use spikewatch::notify::{Format, NotifyUrl, OutputSettings};

use crate::{
    assert_is_event, demo_outages, escalating_outages, output, serve, start, stats, wait_for,
    Receiver,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_each_outage_event_once_in_order_as_the_event_itself() {
    let events = demo_outages();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(output(&format!("{url}/hooks/spikewatch"), Format::Json));
    let h = n.handle();
    for e in events {
        h.notify(e);
    }
    wait_for("every event", || stats(&n).sent == events.len() as u64).await;
    // The pipeline may emit the same events again (after a rebalance): not sent twice.
    for e in events {
        h.notify(e);
    }
    wait_for("the duplicates to be skipped", || {
        stats(&n).deduplicated == events.len() as u64
    })
    .await;
    let st = n.stats();
    n.shutdown(Duration::from_secs(5)).await;

    let got = rx.requests();
    assert_eq!(
        got.len(),
        events.len(),
        "one request per event, no duplicates"
    );
    for (r, e) in got.iter().zip(events) {
        assert_eq!(r.path, "/hooks/spikewatch");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.headers["idempotency-key"].to_str().unwrap(),
            format!("{}#{}", e.outage_id, e.seq)
        );
        assert_is_event(&r.body, e);
    }
    let s = st.snapshot()[0].2;
    assert_eq!((s.failed, s.dropped, s.retries), (0, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_the_first_three_requests_gets_the_event_after_retries() {
    let event = &demo_outages()[0];
    let rx = Receiver {
        fail_first: 3,
        ..Receiver::default()
    };
    let url = serve(rx.clone()).await;
    let n = start(output(&url, Format::Json));
    n.handle().notify(event);
    wait_for("the event", || stats(&n).sent == 1).await;
    let s = stats(&n);
    assert_eq!((s.retries, s.failed), (3, 0), "{s:?}");
    let got = rx.requests();
    assert_eq!(
        got.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    for r in &got {
        assert_is_event(&r.body, event);
    }
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_a_given_up_event_is_counted_as_failed() {
    let event = &demo_outages()[0];
    let rx = Receiver {
        fail_first: usize::MAX,
        ..Receiver::default()
    };
    let url = serve(rx.clone()).await;
    let n = start(OutputSettings {
        max_retries: 2,
        ..output(&url, Format::Json)
    });
    n.handle().notify(event);
    wait_for("the event to be given up", || stats(&n).failed == 1).await;
    assert_eq!(rx.requests().len(), 3, "the first attempt and two retries");
    assert_eq!(stats(&n).sent, 0);
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receiver_does_not_block_the_sender_and_drops_are_counted() {
    let template = &demo_outages()[0];
    let rx = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let url = serve(rx.clone()).await;
    const QUEUE: usize = 16;
    let n = start(OutputSettings {
        queue: QUEUE,
        timeout: Secs(1),
        ..output(&url, Format::Json)
    });
    let h = n.handle();
    let events: Vec<OutageEvent> = (0..1000u64)
        .map(|i| OutageEvent {
            seq: i + 1,
            state: if i == 0 {
                IncidentState::Opened
            } else {
                IncidentState::Updated
            },
            ..template.clone()
        })
        .collect();
    let t = Instant::now();
    for e in &events {
        h.notify(e);
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "notify must not wait: {took:?}"
    );
    let s = stats(&n);
    // At most the queue and the one event in flight are kept.
    assert!(s.dropped >= 1000 - QUEUE as u64 - 1, "{s:?}");
    assert!(s.queued <= QUEUE as u64, "{s:?}");
    assert_eq!(s.sent, 0);
    // Shutting down gives up on the hung receiver instead of waiting for it.
    let t = Instant::now();
    n.shutdown(Duration::from_millis(500)).await;
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_admit_an_outage_from_its_first_matching_event_through_its_resolution() {
    let events = escalating_outages();
    for (filter, want) in [
        (
            OutputSettings {
                only_confirmed: true,
                ..OutputSettings::new("http://unused", Format::Json)
            },
            vec![2, 4],
        ),
        (
            OutputSettings {
                min_severity: Severity::Major,
                ..OutputSettings::new("http://unused", Format::Json)
            },
            vec![2, 4],
        ),
        (
            OutputSettings::new("http://unused", Format::Json),
            vec![0, 1, 2, 3, 4, 5],
        ),
    ] {
        let rx = Receiver::default();
        let url = serve(rx.clone()).await;
        let n = start(OutputSettings {
            url: NotifyUrl(url),
            ..filter
        });
        for e in &events {
            n.handle().notify(e);
        }
        wait_for("the admitted events", || {
            stats(&n).sent == want.len() as u64
        })
        .await;
        n.shutdown(Duration::from_secs(5)).await;
        let got = rx.requests();
        assert_eq!(got.len(), want.len());
        for (r, &i) in got.iter().zip(&want) {
            assert_is_event(&r.body, &events[i]);
        }
    }
}
