//! The Redis bus between nodes: `PUBLISH` through a `bb8` pool, `SUBSCRIBE` on a
//! connection of its own.
//!
//! - Publishing never waits: messages go into a bounded queue that one task drains,
//!   pipelining whatever has gathered onto a pooled connection. When Redis is away the
//!   queue fills and further messages are dropped and counted; the event log heals what
//!   the bus loses.
//! - One task owns the subscription connection. It keeps the set of channels the node
//!   wants, (re)connects with backoff (0.1 s doubling to 5 s), resubscribes everything
//!   after a reconnect and tells the node, which then reads its topics' logs and asks for
//!   presences again. While it is away the bus reports itself degraded (`/readyz`, the
//!   metrics) and the node goes on serving its own clients.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use futures_util::StreamExt;
use stoa_actors::{Bus, BusInbox};
use tokio::sync::mpsc;

/// Messages waiting to be published; beyond this they are dropped (and counted).
const QUEUE: usize = 65_536;
/// Messages sent in one pipeline.
const BATCH: usize = 512;

/// What the bus says about itself, for `/readyz`, `/api/v1/cluster` and the metrics.
#[derive(Default)]
pub struct BusHealth {
    connected: AtomicBool,
    reason: Mutex<Option<String>>,
    pub reconnects: AtomicU64,
    pub published: AtomicU64,
    pub dropped: AtomicU64,
}

impl BusHealth {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Why the bus is not connected, if it is not.
    pub fn reason(&self) -> Option<String> {
        if self.connected() {
            return None;
        }
        let reason = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        Some(reason.clone().unwrap_or_else(|| "connecting".into()))
    }

    pub(crate) fn up(&self) {
        self.connected.store(true, Ordering::Release);
    }

    pub(crate) fn down(&self, why: String) {
        self.connected.store(false, Ordering::Release);
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
    }
}

/// A change to the channels a node wants to hear, sent to the task that owns a bus's
/// connection (the Redis bus and the RabbitMQ bus keep them alike).
pub(crate) enum Subscription {
    Add(String),
    Remove(String),
}

/// The channels a node wants to hear, as its subscription changes come in.
#[derive(Default)]
pub(crate) struct Wanted(BTreeSet<String>);

impl Wanted {
    pub(crate) fn apply(&mut self, change: Subscription) {
        match change {
            Subscription::Add(c) => {
                self.0.insert(c);
            }
            Subscription::Remove(c) => {
                self.0.remove(&c);
            }
        }
    }

    /// Takes in every change already waiting.
    pub(crate) fn catch_up(&mut self, changes: &mut mpsc::UnboundedReceiver<Subscription>) {
        while let Ok(c) = changes.try_recv() {
            self.apply(c);
        }
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.0.contains(channel)
    }

    pub(crate) fn all(&self) -> Vec<&String> {
        self.0.iter().collect()
    }
}

/// A bus connection's life: up (again), or waiting before the next attempt with a backoff
/// of 0.1 s doubling to 5 s.
pub(crate) struct Reconnects {
    backoff: Duration,
    first: bool,
}

impl Reconnects {
    pub(crate) fn new() -> Reconnects {
        Reconnects {
            backoff: Duration::from_millis(100),
            first: true,
        }
    }

    /// The connection is up: the bus is healthy, the backoff starts over, and after the
    /// first time the node reads what it may have missed meanwhile.
    pub(crate) fn up(&mut self, health: &BusHealth, inbox: &BusInbox) {
        health.up();
        self.backoff = Duration::from_millis(100);
        if !self.first {
            health.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("bus reconnected; reading what may have been missed");
            inbox.reconnected();
        }
        self.first = false;
    }

    /// Waits before the next attempt, taking subscription changes meanwhile; false when
    /// the node has gone (nobody will send changes any more).
    pub(crate) async fn wait(
        &mut self,
        wanted: &mut Wanted,
        changes: &mut mpsc::UnboundedReceiver<Subscription>,
    ) -> bool {
        let wait = tokio::time::sleep(self.backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                change = changes.recv() => match change {
                    Some(c) => wanted.apply(c),
                    None => return false,
                },
            }
        }
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        true
    }
}

pub struct RedisBus {
    subscriptions: mpsc::UnboundedSender<Subscription>,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    pub health: Arc<BusHealth>,
}

impl RedisBus {
    /// Starts the bus's tasks on the current runtime. Only a malformed URL is an error: an
    /// unreachable Redis is retried, the bus degraded meanwhile.
    pub fn start(url: &str, inbox: BusInbox) -> Result<RedisBus, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let manager = RedisConnectionManager::new(url)?;
        let pool = bb8::Pool::builder()
            .max_size(4)
            .connection_timeout(Duration::from_secs(2))
            .build_unchecked(manager);
        let health = Arc::new(BusHealth::default());
        health.down("connecting".into());
        let (subscriptions, commands) = mpsc::unbounded_channel();
        let (outgoing, queue) = mpsc::channel(QUEUE);
        actix_web::rt::spawn(subscriber(client, commands, inbox, health.clone()));
        actix_web::rt::spawn(publisher(pool, queue, health.clone()));
        Ok(RedisBus {
            subscriptions,
            outgoing,
            health,
        })
    }
}

impl Bus for RedisBus {
    fn publish(&self, channel: &str, message: Vec<u8>) {
        if self
            .outgoing
            .try_send((channel.to_string(), message))
            .is_err()
        {
            self.health.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn subscribe(&self, channel: &str) {
        let _ = self
            .subscriptions
            .send(Subscription::Add(channel.to_string()));
    }

    fn unsubscribe(&self, channel: &str) {
        let _ = self
            .subscriptions
            .send(Subscription::Remove(channel.to_string()));
    }

    fn connected(&self) -> bool {
        self.health.connected()
    }
}

async fn publisher(
    pool: bb8::Pool<RedisConnectionManager>,
    mut queue: mpsc::Receiver<(String, Vec<u8>)>,
    health: Arc<BusHealth>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, message) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
        }
        let sent = match pool.get().await {
            Ok(mut conn) => pipe.query_async::<()>(&mut *conn).await.is_ok(),
            Err(_) => false,
        };
        let n = batch.len() as u64;
        if sent {
            health.published.fetch_add(n, Ordering::Relaxed);
        } else {
            health.dropped.fetch_add(n, Ordering::Relaxed);
        }
        batch.clear();
    }
}

async fn subscriber(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Subscription>,
    inbox: BusInbox,
    health: Arc<BusHealth>,
) {
    let mut wanted = Wanted::default();
    let mut reconnects = Reconnects::new();
    loop {
        let connected = match client.get_async_pubsub().await {
            Ok(pubsub) => Some(pubsub.split()),
            Err(e) => {
                health.down(format!("redis: {e}"));
                None
            }
        };
        if let Some((mut sink, mut stream)) = connected {
            // Take in what was asked meanwhile, then subscribe to all of it at once.
            wanted.catch_up(&mut commands);
            let all = wanted.all();
            let subscribed = all.is_empty() || sink.subscribe(all).await.is_ok();
            if subscribed {
                reconnects.up(&health, &inbox);
                let why = loop {
                    tokio::select! {
                        command = commands.recv() => {
                            let Some(command) = command else { return };
                            let result = match &command {
                                Subscription::Add(c) if !wanted.contains(c) => {
                                    sink.subscribe(c).await
                                }
                                Subscription::Remove(c) if wanted.contains(c) => {
                                    sink.unsubscribe(c).await
                                }
                                _ => Ok(()),
                            };
                            wanted.apply(command);
                            if let Err(e) = result {
                                break format!("redis: {e}");
                            }
                        }
                        message = stream.next() => {
                            let Some(message) = message else {
                                break "redis: connection closed".to_string();
                            };
                            let channel = message.get_channel_name().to_string();
                            inbox.deliver(&channel, message.get_payload_bytes());
                        }
                    }
                };
                tracing::warn!(reason = %why, "bus disconnected; serving local clients");
                health.down(why);
            }
        }
        if !reconnects.wait(&mut wanted, &mut commands).await {
            return;
        }
    }
}

/// Publishes one message on the control channel from outside a node (the command line),
/// on a connection of its own.
pub async fn publish_once(
    url: &str,
    settings: &crate::config::Settings,
    body: stoa_protocol::bus::Body,
) -> Result<(), redis::RedisError> {
    let secret = settings.resolve_jwt_secret().map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "secret",
            e.to_string(),
        ))
    })?;
    let key = settings.cluster.cluster(&secret.0).key;
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let envelope = stoa_protocol::bus::Envelope::new("stoa-cli", body).at(now_us());
    let message = key.seal(stoa_protocol::bus::CONTROL_CHANNEL, &envelope);
    redis::cmd("PUBLISH")
        .arg(stoa_protocol::bus::CONTROL_CHANNEL)
        .arg(message)
        .query_async::<i64>(&mut conn)
        .await?;
    Ok(())
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
