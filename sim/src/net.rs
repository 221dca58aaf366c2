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
use futures::stream::{AbortHandle, Abortable, LocalBoxStream, SelectAll};
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
        while let Poll::Ready(Some(((broker, generation), frame))) = self.inbox.poll_next(cx) {
            match frame {
                Some(Frame::Response { correlation_id, response }) => {
                    return Poll::Ready(ClientNetEvent::Response { peer: broker, correlation_id, response });
                }
                Some(Frame::Request { .. }) => unreachable!("brokers never send requests to clients"),
                None => {
                    self.inbox.forget((broker, generation));
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
        if let Poll::Ready(Some((conn, frame))) = self.inbox.poll_next(cx) {
            return Poll::Ready(match frame {
                Some(Frame::Request { correlation_id, request }) => {
                    BrokerNetEvent::Request { conn, correlation_id, request }
                }
                Some(Frame::Response { .. }) => unreachable!("clients never send responses"),
                None => {
                    self.inbox.forget(conn);
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
/// Only receivers that were woken are polled (futures' `SelectAll` keeps a
/// waker per stream). Polling every receiver on every wake-up would be
/// quadratic-ish and, worse, each poll of a receiver whose next frame is still
/// in flight registers another madsim timer.
struct Inbox<K> {
    streams: SelectAll<LocalBoxStream<'static, (K, Option<Frame>)>>,
    aborts: BTreeMap<K, AbortHandle>,
}

impl<K> Default for Inbox<K> {
    fn default() -> Self {
        Inbox { streams: SelectAll::new(), aborts: BTreeMap::new() }
    }
}

impl<K: Copy + Ord + 'static> Inbox<K> {
    /// Adds a connection's receiver; it yields its frames as `(key, Some(frame))`
    /// and then one `(key, None)` when it ends (closed by the peer or removed).
    fn insert(&mut self, key: K, receiver: Receiver) {
        let (abort, registration) = AbortHandle::new_pair();
        let frames = Abortable::new(receiver, registration)
            .take_while(|item| std::future::ready(item.is_ok()))
            .map(move |item| {
                let payload = item.expect("only Ok items pass take_while");
                (key, Some(*payload.downcast::<Frame>().expect("connections carry frames")))
            })
            .chain(futures::stream::once(std::future::ready((key, None))));
        self.streams.push(frames.boxed_local());
        self.aborts.insert(key, abort);
    }

    /// Stops receiving on `key`: frames still in flight are never seen.
    fn remove(&mut self, key: K) {
        if let Some(abort) = self.aborts.remove(&key) {
            abort.abort();
        }
    }

    /// Forgets an ended receiver.
    fn forget(&mut self, key: K) {
        self.aborts.remove(&key);
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(K, Option<Frame>)>> {
        self.streams.poll_next_unpin(cx)
    }
}
