//! The Slack-compatible format (Slack, Mattermost, Rocket.Chat, …): the headline as `text`, the
//! details as `blocks`.

use std::time::Duration;

use spikewatch::event::IncidentState;
use spikewatch::notify::Format;

use crate::{demo_outages, output, serve, start, stats, wait_for, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_format_has_the_headline_as_text_and_blocks() {
    let events = demo_outages();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(output(&url, Format::Slack));
    for e in events {
        n.handle().notify(e);
    }
    wait_for("every event", || stats(&n).sent == events.len() as u64).await;
    n.shutdown(Duration::from_secs(5)).await;
    let got = rx.accepted();
    assert_eq!(got.len(), events.len());
    for (r, e) in got.iter().zip(events) {
        let text = r.body["text"].as_str().expect("`text` is a string");
        assert!(
            text.starts_with("telegram: ") && text.contains("problems in IT"),
            "{text}"
        );
        assert!(text.contains(" UTC ("), "{text}");
        if e.confirmed {
            assert!(
                text.contains("confirmed by complaints and mentions"),
                "{text}"
            );
        }
        if e.state == IncidentState::Resolved {
            assert!(text.contains("resolved"), "{text}");
        }
        let blocks = r.body["blocks"].as_array().expect("`blocks`");
        assert!(!blocks.is_empty());
        for b in blocks {
            assert_eq!(b["type"], "section");
            assert_eq!(b["text"]["type"], "mrkdwn");
        }
    }
}
