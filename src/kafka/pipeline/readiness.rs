//! `/readyz` beyond restores and shutdown: not ready once no partition is assigned, or every
//! broker is down, for longer than a grace period.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::Readiness;
use crate::kafka::KafkaSettings;

pub(super) struct ReadinessCheck {
    pub(super) readiness: Option<Arc<Readiness>>,
    /// See [`Self::grace`].
    grace: Duration,
    /// Since when no partition is assigned (`None`: some is).
    unassigned_since: Option<Instant>,
    /// Since when librdkafka reports every broker down (`None`: some broker is up), set by
    /// the consumer's callbacks.
    pub(super) brokers_down: Arc<Mutex<Option<Instant>>>,
    /// `/readyz` is 503 because of [`Self::check`] (not a restore or shutdown).
    unready_by_check: bool,
}

impl ReadinessCheck {
    pub(super) fn new(settings: &KafkaSettings) -> Self {
        Self {
            readiness: None,
            grace: Duration::from_secs((3 * settings.session_timeout.0).max(30)),
            unassigned_since: Some(Instant::now()),
            brokers_down: Arc::new(Mutex::new(None)),
            unready_by_check: false,
        }
    }

    /// How long no assignment, or every broker down, is tolerated before `/readyz` says 503:
    /// a rebalance takes up to about a session timeout, a restart of the broker a little.
    pub(super) fn grace(&self) -> Duration {
        self.grace
    }

    /// Partitions were assigned: the group coordinator answered, so a broker is up.
    pub(super) fn assigned(&mut self) {
        self.unassigned_since = None;
        *self.brokers_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// No partition is assigned any more.
    pub(super) fn unassigned(&mut self) {
        self.unassigned_since.get_or_insert_with(Instant::now);
    }

    /// Why this instance should not count as ready at `now`, beyond restores and shutdown: no
    /// partition assigned (broker unreachable: the group session expired; or more instances
    /// than partitions) or every broker down, for longer than [`Self::grace`].
    fn problem(&self, now: Instant) -> Option<String> {
        let grace = self.grace;
        if let Some(t) = self.unassigned_since {
            let for_ = now.saturating_duration_since(t);
            if for_ > grace {
                return Some(format!(
                    "no partition assigned for {} s (broker unreachable, or more instances than \
                     input partitions)",
                    for_.as_secs()
                ));
            }
        }
        let down = *self.brokers_down.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = down {
            let for_ = now.saturating_duration_since(t);
            if for_ > grace {
                return Some(format!("every broker unreachable for {} s", for_.as_secs()));
            }
        }
        None
    }

    /// Sets `/readyz` from [`Self::problem`]; makes ready again only what it made not ready.
    pub(super) fn check(&mut self, now: Instant) {
        let Some(r) = self.readiness.clone() else {
            return;
        };
        match self.problem(now) {
            Some(why) => {
                if !self.unready_by_check {
                    tracing::warn!("not ready: {why}");
                }
                r.set_not_ready(why);
                self.unready_by_check = true;
            }
            None if self.unready_by_check => {
                tracing::info!("ready again");
                r.set_ready();
                self.unready_by_check = false;
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::test_state as state;
    use super::*;

    #[test]
    fn readyz_is_503_once_no_partition_is_assigned_or_every_broker_is_down_past_the_grace() {
        let mut st = state();
        let readiness = Arc::new(Readiness::default());
        st.health.readiness = Some(readiness.clone());
        let topics = [(st.topic_names[0].clone(), 3)];
        st.assign(&topics);
        readiness.set_ready();
        let grace = st.readiness_grace();
        let t0 = Instant::now();
        st.check_readiness(t0 + 10 * grace);
        assert!(readiness.is_ready(), "assigned: ready however long");

        // The broker goes away: the group session expires and the partition is revoked.
        st.drop_partitions(&topics);
        st.check_readiness(Instant::now());
        assert!(readiness.is_ready(), "a rebalance is not an outage");
        st.check_readiness(Instant::now() + grace + Duration::from_secs(1));
        assert!(!readiness.is_ready());
        assert!(
            readiness.reason().contains("no partition assigned"),
            "{}",
            readiness.reason()
        );
        // Assigned again: ready again.
        st.assign(&topics);
        st.check_readiness(Instant::now());
        assert!(readiness.is_ready());

        // Every broker down while the partition is still assigned.
        *st.health.brokers_down.lock().unwrap() = Some(Instant::now());
        st.check_readiness(Instant::now() + grace + Duration::from_secs(1));
        assert!(!readiness.is_ready());
        assert!(readiness.reason().contains("every broker unreachable"));
        *st.health.brokers_down.lock().unwrap() = None;
        st.check_readiness(Instant::now());
        assert!(readiness.is_ready());
    }

    #[test]
    fn only_readiness_it_took_away_is_given_back() {
        let mut st = state();
        let readiness = Arc::new(Readiness::default());
        st.health.readiness = Some(readiness.clone());
        st.assign(&[(st.topic_names[0].clone(), 3)]);
        readiness.set_not_ready("stopping");
        st.check_readiness(Instant::now());
        assert!(!readiness.is_ready());
        assert_eq!(readiness.reason(), "stopping");
    }
}
