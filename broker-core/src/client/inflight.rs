//! Requests a client has sent and not yet seen answered, with their deadlines.
//!
//! Correlation ids are unique per client (one counter for all brokers), so a
//! response is matched by id alone; the broker must agree. When a request's
//! deadline passes the client closes the connection to that broker, which
//! fails every request in flight on it — the same as a disconnect.

use crate::types::BrokerId;
use std::collections::BTreeMap;

/// Upper bound on requests one client has in flight across all brokers.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 16_384;

/// Smallest retry backoff the clients use: a configured 0 becomes 1 ms, so that
/// a broker failing at once cannot make a client retry forever in one instant.
pub const MIN_RETRY_BACKOFF_MS: u64 = 1;

#[derive(Clone, Debug)]
pub(crate) struct Pending<T> {
    pub broker: BrokerId,
    pub deadline_ms: u64,
    pub payload: T,
}

#[derive(Clone, Debug)]
pub(crate) struct InFlight<T> {
    next_correlation_id: u64,
    requests: BTreeMap<u64, Pending<T>>,
}

impl<T> InFlight<T> {
    pub(crate) fn new() -> InFlight<T> {
        InFlight { next_correlation_id: 0, requests: BTreeMap::new() }
    }

    /// A fresh correlation id (also for requests that expect no response).
    /// Numbers requests from `first` on (a client sharing its connections
    /// with another numbers from its own base).
    pub(crate) fn skip_to(&mut self, first: u64) {
        assert!(self.requests.is_empty() && first >= self.next_correlation_id);
        self.next_correlation_id = first;
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    pub(crate) fn insert(&mut self, correlation_id: u64, broker: BrokerId, deadline_ms: u64, payload: T) {
        assert!(correlation_id < self.next_correlation_id, "correlation id not allocated");
        assert!(self.requests.len() < MAX_IN_FLIGHT_REQUESTS, "too many requests in flight");
        let old = self.requests.insert(correlation_id, Pending { broker, deadline_ms, payload });
        assert!(old.is_none(), "correlation id {correlation_id} reused");
    }

    /// Takes the request a response answers. `None` for ids no longer in flight
    /// (the connection was closed, or the request expected no response).
    pub(crate) fn take(&mut self, broker: BrokerId, correlation_id: u64) -> Option<T> {
        let pending = self.requests.get(&correlation_id)?;
        assert_eq!(pending.broker, broker, "response {correlation_id} came from the wrong broker");
        self.requests.remove(&correlation_id).map(|p| p.payload)
    }

    /// Takes every request in flight to `broker`, oldest first.
    pub(crate) fn take_broker(&mut self, broker: BrokerId) -> Vec<(u64, T)> {
        let ids: Vec<u64> = self.requests.iter().filter(|(_, p)| p.broker == broker).map(|(&id, _)| id).collect();
        ids.into_iter().map(|id| (id, self.requests.remove(&id).expect("listed above").payload)).collect()
    }

    /// A broker with a request whose deadline is at or before `now_ms`.
    pub(crate) fn expired_broker(&self, now_ms: u64) -> Option<BrokerId> {
        self.requests.values().filter(|p| p.deadline_ms <= now_ms).min_by_key(|p| p.deadline_ms).map(|p| p.broker)
    }

    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.requests.values().map(|p| p.deadline_ms).min()
    }

    pub(crate) fn count(&self, broker: BrokerId, pred: impl Fn(&T) -> bool) -> usize {
        self.requests.values().filter(|p| p.broker == broker && pred(&p.payload)).count()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Pending<T>> {
        self.requests.values()
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Pending<T>> {
        self.requests.values_mut()
    }
}
