//! The controller: the one authority on brokers, partition leaders, ISRs and
//! epochs (Kafka's KRaft controller, minus the quorum).
//!
//! ksim runs a single controller, not a Raft quorum: its durability is one
//! file written through [`Storage`] after every change, and a restart recovers
//! that file. There is no controller election or failover to model; a
//! controller that is down simply answers nobody until it restarts.
//!
//! Sans-IO: requests arrive through [`Controller::handle`] and are answered at
//! once; session expiry happens in [`Controller::handle_timeout`], which the
//! simulator calls at [`Controller::next_timeout_ms`]. What happened is queued
//! as [`ControllerEvent`]s ([`Controller::poll_event`]). The durable write
//! happens inside the call that changes the state, so a response (the
//! durability gate) never leaves before the state it reports is on disk.
//!
//! Files: `api` (config, requests, responses, errors, events), `image`
//! (the metadata image and its rules), `election` (who leads after a fence or
//! unfence), `alter` (AlterPartition validation), `persist` (the file).

mod alter;
mod api;
mod election;
mod image;
mod persist;

#[cfg(test)]
mod proptests;
/// KIP-966's eligible leader replicas after `prev` becomes `next`: members
/// that left the ISR while it is below min.insync.replicas join the ELR
/// (the HW cannot advance without them, so they hold every committed
/// record), unless they left as an untrusted last member; members back in
/// the ISR leave it; an ISR at or above min.insync.replicas empties it.
fn update_elr(prev: &PartitionState, next: &mut PartitionState, min_isr: usize) {
    if next.isr.len() >= min_isr {
        next.elr.clear();
        return;
    }
    let mut elr: Vec<BrokerId> = next.elr.iter().copied().filter(|r| !next.isr.contains(r)).collect();
    if !prev.last_member_unclean {
        elr.extend(prev.isr.iter().copied().filter(|r| !next.isr.contains(r)));
    }
    next.elr = next.in_replica_order(&elr);
}

#[cfg(test)]
mod elr_tests;
#[cfg(test)]
mod tests;

pub use api::{
    ControllerConfig, ControllerError, ControllerEvent, ControllerRequest, ControllerResponse, ProducerIdBlock,
    PRODUCER_ID_BLOCK_SIZE,
};
pub use image::{BrokerState, MetadataImage, PartitionState};
pub use persist::MAX_METADATA_FILE_BYTES;

use crate::broker::ClusterLayout;
use crate::storage::{write_durably, Storage};
use crate::types::{BrokerEpoch, BrokerId, ProducerId, TopicPartition};
use alter::AlterRequest;
use election::{ElectionPolicy, Outcome};
use persist::Durable;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The controller's one file.
pub const METADATA_FILE: &str = "controller/metadata";
/// Most brokers a cluster layout may name.
pub const MAX_BROKERS: usize = 1024;
/// Most partitions (over all topics) a cluster layout may hold.
pub const MAX_PARTITIONS: usize = 65_536;
/// Most undrained events. The simulator drains after every call; reaching
/// this means it does not, and holding more would only grow memory.
pub const MAX_QUEUED_EVENTS: usize = 1_000_000;
/// Longest session timeout accepted (one simulated day).
pub const MAX_SESSION_TIMEOUT_MS: u64 = 86_400_000;

pub struct Controller {
    config: ControllerConfig,
    image: MetadataImage,
    /// Persisted: epochs must grow across restarts too, or a broker that
    /// registered before the restart could be confused with one after (KIP-903).
    next_broker_epoch: BrokerEpoch,
    /// Persisted: the start of the next producer id block.
    next_producer_id: i64,
    /// `next_producer_id` as last written to storage.
    persisted_producer_id: i64,
    /// Last heartbeat or registration per registered broker. Volatile: a
    /// restarted controller gives every broker a fresh session.
    last_contact_ms: BTreeMap<BrokerId, u64>,
    /// The brokers the layout names; no other may register.
    layout_brokers: BTreeSet<BrokerId>,
    /// Each topic's min.insync.replicas from the layout, by topic id.
    topic_min_isr: Vec<u32>,
    storage: Box<dyn Storage>,
    /// The image version last written to storage.
    persisted_version: u64,
    events: VecDeque<ControllerEvent>,
    /// Why the controller stopped (its metadata could not be written), once it has.
    halted: Option<String>,
}

impl Controller {
    /// Boots the controller: recovers [`METADATA_FILE`] when it exists (and
    /// checks it against `layout`), else starts from the initial image and
    /// writes it. `Err` for a config or layout out of bounds, or a file that is
    /// corrupt or does not match the layout.
    pub fn start(
        config: ControllerConfig,
        layout: &ClusterLayout,
        mut storage: Box<dyn Storage>,
        now_ms: u64,
    ) -> Result<Controller, String> {
        check_config(&config)?;
        check_layout(layout)?;
        let durable = match storage.read(METADATA_FILE) {
            Some(bytes) => {
                let durable = persist::decode(&bytes).map_err(|e| format!("{METADATA_FILE}: {e}"))?;
                check_matches_layout(&durable.image, layout).map_err(|e| format!("{METADATA_FILE}: {e}"))?;
                durable
            }
            None => {
                let durable = Durable {
                    image: MetadataImage::initial(layout),
                    next_broker_epoch: BrokerEpoch(1),
                    next_producer_id: 0,
                };
                write_durably(storage.as_mut(), METADATA_FILE, &persist::encode(&durable))
                    .map_err(|e| format!("writing {METADATA_FILE}: {e}"))?;
                durable
            }
        };
        let last_contact_ms = durable.image.brokers.keys().map(|&b| (b, now_ms)).collect();
        Ok(Controller {
            config,
            persisted_version: durable.image.version,
            image: durable.image,
            next_broker_epoch: durable.next_broker_epoch,
            next_producer_id: durable.next_producer_id,
            persisted_producer_id: durable.next_producer_id,
            last_contact_ms,
            layout_brokers: layout.brokers.iter().copied().collect(),
            topic_min_isr: layout.topics.iter().map(|t| t.min_insync_replicas).collect(),
            storage,
            events: VecDeque::new(),
            halted: None,
        })
    }

    /// Answers one request; any change is on disk before this returns.
    pub fn handle(&mut self, now_ms: u64, request: ControllerRequest) -> ControllerResponse {
        let response = match request {
            ControllerRequest::Register { broker, clean_shutdown } => {
                ControllerResponse::Register(self.register(now_ms, broker, clean_shutdown))
            }
            ControllerRequest::Heartbeat { broker, broker_epoch, known_version } => {
                ControllerResponse::Heartbeat(self.heartbeat(now_ms, broker, broker_epoch, known_version))
            }
            ControllerRequest::AlterPartition { broker, broker_epoch, tp, leader_epoch, partition_epoch, new_isr } => {
                let req = AlterRequest { broker, broker_epoch, tp, leader_epoch, partition_epoch, new_isr: &new_isr };
                ControllerResponse::AlterPartition(self.alter_partition(req))
            }
            ControllerRequest::AllocateProducerIds { broker, broker_epoch } => {
                ControllerResponse::AllocateProducerIds(self.allocate_producer_ids(broker, broker_epoch))
            }
        };
        self.persist_if_changed();
        response
    }

    /// Fences every unfenced broker whose session has expired at `now_ms`, in
    /// broker order.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let timeout = self.config.session_timeout_ms;
        let expired: Vec<BrokerId> = self
            .image
            .brokers
            .iter()
            .filter(|(b, s)| !s.fenced && now_ms >= self.last_contact_ms[*b].saturating_add(timeout))
            .map(|(b, _)| *b)
            .collect();
        for broker in expired {
            self.fence(broker);
        }
        self.persist_if_changed();
    }

    /// The earliest session deadline of an unfenced broker; `None` when no
    /// session can expire.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        self.image
            .brokers
            .iter()
            .filter(|(_, s)| !s.fenced)
            .map(|(b, _)| self.last_contact_ms[b].saturating_add(self.config.session_timeout_ms))
            .min()
    }

    /// The oldest event not yet taken.
    pub fn poll_event(&mut self) -> Option<ControllerEvent> {
        self.events.pop_front()
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    pub fn partition(&self, tp: TopicPartition) -> Option<&PartitionState> {
        self.image.partitions.get(&tp)
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// min.insync.replicas as Kafka applies it: the topic's setting (from the
    /// layout) or the cluster-wide default, whichever is larger, capped at the
    /// replication factor. It decides when ISR leavers become ELR members.
    pub fn effective_min_insync_replicas(&self, tp: TopicPartition) -> Option<u32> {
        let replicas = self.partition(tp)?.replicas.len() as u32;
        let topic = self.topic_min_isr.get(tp.topic.0 as usize).copied().unwrap_or(1);
        Some(self.config.min_insync_replicas.max(topic).min(replicas))
    }

    fn register(
        &mut self,
        now_ms: u64,
        broker: BrokerId,
        clean_shutdown: bool,
    ) -> Result<BrokerEpoch, ControllerError> {
        if !self.layout_brokers.contains(&broker) {
            return Err(ControllerError::InvalidRequest);
        }
        // A live old incarnation is dead now: its process restarted. Fencing it
        // first moves its leaderships and ISR places, as a session expiry would.
        if self.image.brokers.get(&broker).is_some_and(|s| !s.fenced) {
            self.fence(broker);
        }
        let epoch = self.next_broker_epoch;
        self.next_broker_epoch = BrokerEpoch(epoch.0.checked_add(1).expect("broker epoch overflow"));
        let old = self.image.brokers.insert(broker, BrokerState { epoch, fenced: true });
        assert!(old.is_none_or(|o| o.epoch < epoch && o.fenced), "broker epochs only grow: {old:?} -> {epoch:?}");
        self.last_contact_ms.insert(broker, now_ms);
        self.bump_version();
        self.push_event(ControllerEvent::BrokerRegistered { broker, broker_epoch: epoch });
        if !clean_shutdown && !self.config.trust_unclean_restarts {
            self.distrust_unclean_restart(broker);
        }
        Ok(epoch)
    }

    /// KIP-966: a broker back from an unclean shutdown may have lost what it
    /// had not flushed. It leaves every ELR, and where it is the last member
    /// of an offline partition's ISR it may lead again only if no ELR member
    /// is left to wait for (see `election::elect`). Each such change bumps
    /// the partition epoch, as every change of partition state does.
    fn distrust_unclean_restart(&mut self, broker: BrokerId) {
        let changes: Vec<(TopicPartition, PartitionState)> = self
            .image
            .partitions
            .iter()
            .filter_map(|(tp, p)| {
                let in_elr = p.elr.contains(&broker);
                let last_standing = p.leader.is_none() && p.isr == [broker] && !p.last_member_unclean;
                if !(in_elr || last_standing) {
                    return None;
                }
                let mut next = p.clone();
                next.elr.retain(|&r| r != broker);
                next.last_member_unclean |= last_standing;
                next.partition_epoch = p.partition_epoch.checked_add(1).expect("partition epoch overflow");
                Some((*tp, next))
            })
            .collect();
        for (tp, next) in changes {
            self.commit(tp, next, true);
        }
    }

    fn heartbeat(
        &mut self,
        now_ms: u64,
        broker: BrokerId,
        epoch: BrokerEpoch,
        known_version: u64,
    ) -> Result<Option<MetadataImage>, ControllerError> {
        alter::check_broker_epoch(&self.image, broker, epoch)?;
        self.last_contact_ms.insert(broker, now_ms);
        if self.image.brokers[&broker].fenced {
            self.unfence(broker);
        }
        // `!=` rather than `<`: a broker ahead of us means we lost state, and
        // it must still be told what we now hold.
        Ok((known_version != self.image.version).then(|| self.image.clone()))
    }

    fn alter_partition(&mut self, req: AlterRequest<'_>) -> Result<PartitionState, ControllerError> {
        let isr = alter::validate(&self.image, req)?;
        let current = &self.image.partitions[&req.tp];
        debug_assert_eq!(current.leader, Some(req.broker));
        // Kafka answers an unchanged ISR with the current state and no new epoch.
        if let Some(next) = current.transition(current.leader, isr) {
            self.commit(req.tp, next, true);
        }
        Ok(self.image.partitions[&req.tp].clone())
    }

    /// Fences `broker` and applies the consequences to every partition.
    fn fence(&mut self, broker: BrokerId) {
        let state = self.image.brokers.get_mut(&broker).expect("fencing a registered broker");
        assert!(!state.fenced, "fencing {broker} twice");
        state.fenced = true;
        let broker_epoch = state.epoch;
        self.bump_version();
        self.push_event(ControllerEvent::BrokerFenced { broker, broker_epoch });
        let policy = self.policy();
        let image = &self.image;
        let changes: Vec<(TopicPartition, Outcome)> = image
            .partitions
            .iter()
            .filter_map(|(tp, p)| Some((*tp, election::on_fenced(p, broker, |b| image.is_unfenced(b), policy)?)))
            .collect();
        self.apply(changes);
        debug_assert!(self.image.partitions.values().all(|p| p.leader != Some(broker)), "{broker} still leads");
    }

    /// Unfences `broker`; offline partitions may get a leader again.
    fn unfence(&mut self, broker: BrokerId) {
        let state = self.image.brokers.get_mut(&broker).expect("unfencing a registered broker");
        assert!(state.fenced, "unfencing {broker} twice");
        state.fenced = false;
        let broker_epoch = state.epoch;
        self.bump_version();
        self.push_event(ControllerEvent::BrokerUnfenced { broker, broker_epoch });
        let policy = self.policy();
        let image = &self.image;
        let changes: Vec<(TopicPartition, Outcome)> = image
            .partitions
            .iter()
            .filter_map(|(tp, p)| Some((*tp, election::on_unfenced(p, |b| image.is_unfenced(b), policy)?)))
            .collect();
        self.apply(changes);
    }

    fn policy(&self) -> ElectionPolicy {
        ElectionPolicy { unclean: self.config.unclean_leader_election, unclean_always: self.config.unclean_always }
    }

    fn apply(&mut self, changes: Vec<(TopicPartition, Outcome)>) {
        for (tp, outcome) in changes {
            if let Some(next) = self.image.partitions[&tp].transition(outcome.leader, outcome.isr) {
                self.commit(tp, next, outcome.clean);
            }
        }
    }

    /// The one place a partition's state changes: epochs checked, version
    /// bumped, event queued.
    fn commit(&mut self, tp: TopicPartition, mut next: PartitionState, clean: bool) {
        let min_isr = self.effective_min_insync_replicas(tp).expect("a known partition") as usize;
        let prev = self.image.partitions.get(&tp).expect("committing a known partition");
        update_elr(prev, &mut next, min_isr);
        assert_eq!(next.check(), Ok(()), "{tp}");
        assert_eq!(next.replicas, prev.replicas, "{tp}: replicas are fixed");
        assert!(next.partition_epoch > prev.partition_epoch, "{tp}: every change bumps the partition epoch");
        let leader_changed = next.leader != prev.leader;
        assert!(
            next.leader_epoch == if leader_changed { prev.leader_epoch.next() } else { prev.leader_epoch },
            "{tp}: the leader epoch moves by one exactly when the leader changes"
        );
        if let Some(leader) = next.leader {
            assert!(self.image.is_unfenced(leader) || next.leader == prev.leader, "{tp}: elected a fenced {leader}");
        }
        let event = if leader_changed {
            ControllerEvent::LeaderElected {
                tp,
                leader: next.leader,
                leader_epoch: next.leader_epoch,
                partition_epoch: next.partition_epoch,
                isr: next.isr.clone(),
                clean,
            }
        } else {
            ControllerEvent::IsrChanged { tp, isr: next.isr.clone(), partition_epoch: next.partition_epoch }
        };
        self.image.partitions.insert(tp, next);
        self.bump_version();
        self.push_event(event);
    }

    fn bump_version(&mut self) {
        self.image.version = self.image.version.checked_add(1).expect("image version overflow");
    }

    fn push_event(&mut self, event: ControllerEvent) {
        assert!(self.events.len() < MAX_QUEUED_EVENTS, "controller events are not being drained");
        self.events.push_back(event);
    }

    /// Why the controller stopped, if it has: a metadata write failed (the
    /// disk is full), so the change it just made is not durable and it must
    /// not act on it. The simulator drops its answer and stops the node.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Writes the image if it changed since the last write (a synced
    /// temporary file renamed over the old one, so a power loss leaves one of
    /// the two whole). Every change bumps the version, so comparing versions
    /// is enough.
    fn persist_if_changed(&mut self) {
        if self.image.version == self.persisted_version && self.next_producer_id == self.persisted_producer_id {
            return;
        }
        assert!(self.image.version >= self.persisted_version, "the image version only grows");
        let durable = Durable {
            image: self.image.clone(),
            next_broker_epoch: self.next_broker_epoch,
            next_producer_id: self.next_producer_id,
        };
        if let Err(e) = write_durably(self.storage.as_mut(), METADATA_FILE, &persist::encode(&durable)) {
            self.halted.get_or_insert_with(|| format!("writing {METADATA_FILE}: {e}"));
            return;
        }
        self.persisted_version = self.image.version;
        self.persisted_producer_id = self.next_producer_id;
    }

    /// Hands a registered broker the next block of producer ids (KIP-730's
    /// AllocateProducerIds). The block is on disk before the answer leaves
    /// (`handle` persists), so a restarted controller never hands it out again.
    fn allocate_producer_ids(
        &mut self,
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
    ) -> Result<ProducerIdBlock, ControllerError> {
        let state = self.image.brokers.get(&broker).ok_or(ControllerError::BrokerNotRegistered)?;
        if state.epoch != broker_epoch {
            return Err(ControllerError::StaleBrokerEpoch);
        }
        let first = self.next_producer_id;
        let end = first.checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE)).ok_or(ControllerError::InvalidRequest)?;
        self.next_producer_id = end;
        Ok(ProducerIdBlock { first: ProducerId(first), count: PRODUCER_ID_BLOCK_SIZE })
    }

    /// Every structural rule over the whole image (O(partitions); tests call
    /// it after every step, the hot path checks only what it changes).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.image.check(), Ok(()));
        assert!(self.image.brokers.values().all(|b| b.epoch < self.next_broker_epoch));
        assert_eq!(self.image.version, self.persisted_version, "unpersisted change");
        for b in self.image.brokers.keys() {
            assert!(self.last_contact_ms.contains_key(b) && self.layout_brokers.contains(b));
        }
    }
}

fn check_config(config: &ControllerConfig) -> Result<(), String> {
    if !(1..=MAX_SESSION_TIMEOUT_MS).contains(&config.session_timeout_ms) {
        return Err(format!("session_timeout_ms must be in 1..={MAX_SESSION_TIMEOUT_MS}"));
    }
    if config.min_insync_replicas == 0 {
        return Err("min_insync_replicas must be at least 1".into());
    }
    Ok(())
}

fn check_layout(layout: &ClusterLayout) -> Result<(), String> {
    let brokers: BTreeSet<BrokerId> = layout.brokers.iter().copied().collect();
    if brokers.len() != layout.brokers.len() || brokers.is_empty() || brokers.len() > MAX_BROKERS {
        return Err(format!("the layout must name 1..={MAX_BROKERS} distinct brokers"));
    }
    let mut count = 0usize;
    for tp in layout.partitions() {
        count += 1;
        if count > MAX_PARTITIONS {
            return Err(format!("the layout has more than {MAX_PARTITIONS} partitions"));
        }
        let replicas = layout.replicas(tp).expect("layout lists its partitions");
        let distinct: BTreeSet<BrokerId> = replicas.iter().copied().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() || !distinct.is_subset(&brokers) {
            return Err(format!("{tp}: replicas {replicas:?} must be distinct brokers of the layout"));
        }
    }
    Ok(())
}

/// A recovered image must describe the same partitions and replicas, and
/// only brokers the layout names.
fn check_matches_layout(image: &MetadataImage, layout: &ClusterLayout) -> Result<(), String> {
    if !image.partitions.keys().copied().eq(layout.partitions()) {
        return Err("its partitions differ from the cluster layout's".into());
    }
    for (tp, p) in &image.partitions {
        if layout.replicas(*tp) != Some(p.replicas.as_slice()) {
            return Err(format!("{tp}: replicas {:?} differ from the layout's", p.replicas));
        }
    }
    match image.brokers.keys().find(|b| !layout.brokers.contains(b)) {
        Some(b) => Err(format!("{b} is not in the cluster layout")),
        None => Ok(()),
    }
}
