//! Kafka connections on madsim's reliable, ordered connections.
//!
//! A client (or a broker, for its own requests to other brokers and the
//! controller) keeps at most one connection per peer and reconnects on demand;
//! the broker numbers accepted connections. Frames travel as objects. A frame
//! already sent on an abandoned connection can still arrive: late responses
//! are dropped by the client because their connection is gone, late requests
//! still reach the broker — as they do in Kafka.

use crate::trace::TraceEvent;
use crate::world::World;
use broker_core::broker::ConnId;
use broker_core::protocol::{CorrelationId, Frame, Peer, Request, Response};
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::{FutureExt, StreamExt};
use madsim::net::{Endpoint, Receiver, Sender};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Most frames a client queues for one broker while connecting (ksim's bound).
pub const MAX_QUEUED_FRAMES: usize = 10_000;

/// What the network tells a client.
pub enum ClientNetEvent {
    Response {
        peer: Peer,
        correlation_id: CorrelationId,
        response: Response,
    },
    /// The connection to `peer` failed or closed; requests in flight on it are lost.
    Disconnected {
        peer: Peer,
    },
}

struct ConnectResult {
    peer: Peer,
    generation: u64,
    result: std::io::Result<(Sender, Receiver)>,
}

enum Conn {
    Connecting { generation: u64, queued: Vec<Frame> },
    Open { generation: u64, sender: Sender },
}

impl Conn {
    fn generation(&self) -> u64 {
        match self {
            Conn::Connecting { generation, .. } | Conn::Open { generation, .. } => *generation,
        }
    }
}

pub struct ClientNet {
    world: Arc<World>,
    node: usize,
    endpoint: Rc<Endpoint>,
    conns: BTreeMap<Peer, Conn>,
    inbox: Inbox<(Peer, u64)>,
    connect_tx: UnboundedSender<ConnectResult>,
    connect_rx: UnboundedReceiver<ConnectResult>,
    next_generation: u64,
}

impl ClientNet {
    pub async fn bind(world: Arc<World>, node: usize) -> ClientNet {
        let endpoint = Endpoint::bind(SocketAddr::new(world.ip(node), 0)).await.expect("client endpoint binds");
        let (connect_tx, connect_rx) = unbounded();
        ClientNet {
            world,
            node,
            endpoint: Rc::new(endpoint),
            conns: BTreeMap::new(),
            inbox: Inbox::default(),
            connect_tx,
            connect_rx,
            next_generation: 0,
        }
    }

    /// Sends a request, connecting first if needed.
    pub fn send(&mut self, peer: impl Into<Peer>, correlation_id: CorrelationId, request: Request) {
        let broker = peer.into();
        let to = self.world.peer_node(broker) as u32;
        self.world.trace(self.node, TraceEvent::Request { to, correlation_id, kind: request.kind() });
        self.world.count_message();
        let frame = Frame::Request { correlation_id, request };
        match self.conns.get_mut(&broker) {
            Some(Conn::Open { sender, .. }) => {
                // madsim's send completes synchronously; a closed connection shows up
                // as the receiver ending, which reports the disconnect.
                let _ = sender.send(Box::new(frame)).now_or_never();
            }
            Some(Conn::Connecting { queued, .. }) => {
                assert!(queued.len() < MAX_QUEUED_FRAMES, "client queued too many frames for {broker}");
                queued.push(frame);
            }
            None => self.connect(broker, vec![frame]),
        }
    }

    fn connect(&mut self, broker: Peer, queued: Vec<Frame>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.conns.insert(broker, Conn::Connecting { generation, queued });
        let endpoint = self.endpoint.clone();
        let addr = self.world.peer_addr(broker);
        let tx = self.connect_tx.clone();
        madsim::task::spawn_local(async move {
            let result = endpoint.connect1(addr).await;
            let _ = tx.unbounded_send(ConnectResult { peer: broker, generation, result });
        });
    }

    /// Drops the connection to `broker`: late responses on it are never seen.
    pub fn close(&mut self, broker: impl Into<Peer>) {
        let broker = broker.into();
        if let Some(conn) = self.conns.remove(&broker) {
            self.inbox.remove((broker, conn.generation()));
        }
    }

    /// The next network event for this client.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<ClientNetEvent> {
        while let Poll::Ready(Some(done)) = self.connect_rx.poll_next_unpin(cx) {
            if let Some(event) = self.on_connect_result(done) {
                return Poll::Ready(event);
            }
        }
        while let Poll::Ready(((broker, generation), frame)) = self.inbox.poll_next(cx) {
            match frame {
                Some(Frame::Response { correlation_id, response }) => {
                    return Poll::Ready(ClientNetEvent::Response { peer: broker, correlation_id, response });
                }
                Some(Frame::Request { .. }) => unreachable!("brokers never send requests to clients"),
                None => {
                    if self.conns.get(&broker).is_some_and(|c| c.generation() == generation) {
                        self.conns.remove(&broker);
                        return Poll::Ready(ClientNetEvent::Disconnected { peer: broker });
                    }
                    // An abandoned connection ended: nothing to report.
                }
            }
        }
        Poll::Pending
    }

    fn on_connect_result(&mut self, done: ConnectResult) -> Option<ClientNetEvent> {
        let ConnectResult { peer: broker, generation, result } = done;
        let current = self.conns.get(&broker).is_some_and(|c| c.generation() == generation);
        if !current {
            return None; // closed while connecting; dropping the halves closes it
        }
        match result {
            Ok((sender, receiver)) => {
                let Some(Conn::Connecting { queued, .. }) = self.conns.remove(&broker) else {
                    unreachable!("a current connecting entry")
                };
                for frame in queued {
                    let _ = sender.send(Box::new(frame)).now_or_never();
                }
                self.inbox.insert((broker, generation), receiver);
                self.conns.insert(broker, Conn::Open { generation, sender });
                None
            }
            Err(_) => {
                self.conns.remove(&broker);
                let to = self.world.peer_node(broker) as u32;
                self.world.trace(self.node, TraceEvent::ConnectFailed { to });
                Some(ClientNetEvent::Disconnected { peer: broker })
            }
        }
    }
}

/// What the network tells a broker.
pub enum BrokerNetEvent {
    Request { conn: ConnId, correlation_id: CorrelationId, request: Request },
    Closed { conn: ConnId },
}

pub struct BrokerNet {
    world: Arc<World>,
    node: usize,
    accepted: UnboundedReceiver<(Sender, Receiver, SocketAddr)>,
    senders: BTreeMap<ConnId, (Sender, u32)>,
    inbox: Inbox<ConnId>,
    next_conn: ConnId,
}

impl BrokerNet {
    pub async fn bind(world: Arc<World>, node: usize, addr: SocketAddr) -> BrokerNet {
        let endpoint = Endpoint::bind(addr).await.expect("broker endpoint binds");
        let (tx, accepted) = unbounded();
        madsim::task::spawn_local(async move {
            while let Ok(conn) = endpoint.accept1().await {
                if tx.unbounded_send(conn).is_err() {
                    break;
                }
            }
        });
        BrokerNet { world, node, accepted, senders: BTreeMap::new(), inbox: Inbox::default(), next_conn: 0 }
    }

    pub fn respond(&mut self, conn: ConnId, correlation_id: CorrelationId, response: Response) {
        let Some((sender, peer)) = self.senders.get(&conn) else { return };
        self.world.trace(self.node, TraceEvent::Response { to: *peer, correlation_id, kind: response.kind() });
        self.world.count_message();
        let _ = sender.send(Box::new(Frame::Response { correlation_id, response })).now_or_never();
    }

    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<BrokerNetEvent> {
        while let Poll::Ready(Some((sender, receiver, addr))) = self.accepted.poll_next_unpin(cx) {
            let conn = self.next_conn;
            self.next_conn += 1;
            let peer = self.peer_node(addr).unwrap_or(u32::MAX);
            self.senders.insert(conn, (sender, peer));
            self.inbox.insert(conn, receiver);
        }
        if let Poll::Ready((conn, frame)) = self.inbox.poll_next(cx) {
            return Poll::Ready(match frame {
                Some(Frame::Request { correlation_id, request }) => {
                    BrokerNetEvent::Request { conn, correlation_id, request }
                }
                Some(Frame::Response { .. }) => unreachable!("clients never send responses"),
                None => {
                    self.senders.remove(&conn);
                    BrokerNetEvent::Closed { conn }
                }
            });
        }
        Poll::Pending
    }

    fn peer_node(&self, addr: SocketAddr) -> Option<u32> {
        (0..self.world.nodes.len()).find(|&n| self.world.ip(n) == addr.ip()).map(|n| n as u32)
    }
}

/// The receiving halves of a node's connections, each tagged with its key.
///
/// Only receivers that were woken are polled: each has its own waker, which
/// queues the receiver and wakes the node. Polling every receiver on every
/// wake-up would be quadratic-ish and, worse, each poll of a receiver whose
/// next frame is still in flight registers another madsim timer. A receiver
/// that yielded a frame goes to the back of the queue, so one busy
/// connection does not starve the others. (futures' `SelectAll` did the same
/// through a boxed chain of stream adapters, an abort handle whose waker it
/// registered on every poll, and a fresh task allocation per frame.)
struct Inbox<K> {
    /// By slot; a freed slot is reused.
    slots: Vec<Option<Slot<K>>>,
    free: Vec<usize>,
    keys: BTreeMap<K, usize>,
    wakes: Arc<Wakes>,
    next_incarnation: u64,
}

struct Slot<K> {
    key: K,
    receiver: Receiver,
    waker: std::task::Waker,
    /// Which incarnation of the slot its waker belongs to: a stale waker of
    /// a freed and reused slot must not queue the new receiver.
    incarnation: u64,
}

/// What receivers' wakers share with their inbox.
#[derive(Default)]
struct Wakes {
    /// Slots to poll, in the order they were woken, each at most once.
    ready: std::sync::Mutex<ReadyQueue>,
    node: futures::task::AtomicWaker,
}

#[derive(Default)]
struct ReadyQueue {
    order: std::collections::VecDeque<(usize, u64)>,
    /// By slot: the incarnation queued, if any.
    queued: Vec<Option<u64>>,
}

impl ReadyQueue {
    fn push(&mut self, slot: usize, incarnation: u64) -> bool {
        if self.queued.len() <= slot {
            self.queued.resize(slot + 1, None);
        }
        if self.queued[slot] == Some(incarnation) {
            return false;
        }
        self.queued[slot] = Some(incarnation);
        self.order.push_back((slot, incarnation));
        true
    }

    fn pop(&mut self) -> Option<(usize, u64)> {
        let (slot, incarnation) = self.order.pop_front()?;
        if self.queued[slot] == Some(incarnation) {
            self.queued[slot] = None;
        }
        Some((slot, incarnation))
    }
}

struct SlotWaker {
    slot: usize,
    incarnation: u64,
    wakes: Arc<Wakes>,
}

impl futures::task::ArcWake for SlotWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        let queued = this.wakes.ready.lock().expect("inbox queue").push(this.slot, this.incarnation);
        if queued {
            this.wakes.node.wake();
        }
    }
}

impl<K> Default for Inbox<K> {
    fn default() -> Self {
        Inbox { slots: Vec::new(), free: Vec::new(), keys: BTreeMap::new(), wakes: Arc::default(), next_incarnation: 0 }
    }
}

impl<K: Copy + Ord + 'static> Inbox<K> {
    /// Adds a connection's receiver; it yields its frames as `(key, Some(frame))`
    /// and then one `(key, None)` when the peer closes it.
    fn insert(&mut self, key: K, receiver: Receiver) {
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let waker = futures::task::waker(Arc::new(SlotWaker { slot, incarnation, wakes: self.wakes.clone() }));
        // Polled once before any wake-up, so that it registers its waker.
        self.wakes.ready.lock().expect("inbox queue").push(slot, incarnation);
        self.slots[slot] = Some(Slot { key, receiver, waker, incarnation });
        if let Some(old) = self.keys.insert(key, slot) {
            self.free_slot(old);
        }
    }

    /// Stops receiving on `key` at once: frames still in flight are never
    /// seen, and no `(key, None)` follows.
    fn remove(&mut self, key: K) {
        if let Some(slot) = self.keys.remove(&key) {
            self.free_slot(slot);
        }
    }

    fn free_slot(&mut self, slot: usize) {
        if self.slots[slot].take().is_some() {
            self.free.push(slot);
        }
    }

    /// The next frame (or end) of a woken receiver.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(K, Option<Frame>)> {
        self.wakes.node.register(cx.waker());
        loop {
            let next = self.wakes.ready.lock().expect("inbox queue").pop();
            let Some((index, incarnation)) = next else { return Poll::Pending };
            let Some(slot) = self.slots[index].as_mut().filter(|s| s.incarnation == incarnation) else { continue };
            let mut slot_cx = Context::from_waker(&slot.waker);
            match slot.receiver.poll_next_unpin(&mut slot_cx) {
                Poll::Pending => continue,
                Poll::Ready(Some(Ok(payload))) => {
                    let key = slot.key;
                    self.wakes.ready.lock().expect("inbox queue").push(index, incarnation);
                    let frame = *payload.downcast::<Frame>().expect("connections carry frames");
                    return Poll::Ready((key, Some(frame)));
                }
                Poll::Ready(Some(Err(_)) | None) => {
                    let key = slot.key;
                    self.keys.remove(&key);
                    self.free_slot(index);
                    return Poll::Ready((key, None));
                }
            }
        }
    }
}
