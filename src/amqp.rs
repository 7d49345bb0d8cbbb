//! The RabbitMQ bus between nodes (`bus.url = amqp://…`, or `amqps://…` for TLS), behind the same `Bus` port as
//! the Redis bus and the in-process hub.
//!
//! - One fanout exchange per kind of channel (`stoa.ctl`, `stoa.e` for workspaces' events,
//!   `stoa.y` for documents, `stoa.t` for topics), the channel's name as routing key.
//! - Each node consumes one exclusive, server-named queue (RabbitMQ deletes it when the
//!   node's connection ends), bound once to every exchange, and keeps what it hears only
//!   for the channels it wants. Binding per channel instead was tried: a binding takes
//!   effect in the broker some hundreds of microseconds after it is asked for, so a message
//!   another node published right after a client joined (a notification, a broadcast) was
//!   routed to nobody; Phoenix's PubSub adapters send every message to every node too.
//! - No acknowledgements, nothing persistent: like Redis's PUBLISH, the bus is the fast
//!   path and the event log is the truth.
//! - Publishing never waits: a bounded queue that one task drains onto its own channel;
//!   while the broker is away the queue fills and further messages are dropped and
//!   counted.
//! - One task owns the connection: it (re)connects with backoff (0.1 s doubling to 5 s),
//!   declares the exchanges and the queue, and after a reconnect tells the node, which then
//!   reads its topics' logs and asks for presences again. While the broker is away the bus
//!   reports itself degraded.
//!
//! The crate is `amqprs`: AMQP 0-9-1 on tokio with six dependencies of its own (`lapin`
//! brings an executor abstraction and some three hundred crates more).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use amqprs::channel::{
    BasicConsumeArguments, BasicPublishArguments, Channel, ExchangeDeclareArguments,
    QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::BasicProperties;
use stoa_actors::{Bus, BusInbox};
use tokio::sync::mpsc;

use crate::bus::{BusHealth, Reconnects, Subscription, Wanted};

/// Messages waiting to be published; beyond this they are dropped (and counted).
const QUEUE: usize = 65_536;
/// AMQP's routing keys are short strings.
const MAX_ROUTING_KEY: usize = 255;

pub struct RabbitBus {
    commands: mpsc::UnboundedSender<Subscription>,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    pub health: Arc<BusHealth>,
}

/// Where and as whom to connect, from `amqp://user:pass@host:port/vhost`.
fn connection_arguments(url: &str) -> Result<OpenConnectionArguments, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    let tls = match parsed.scheme() {
        "amqp" => false,
        "amqps" => true,
        _ => return Err(format!("{url:?}: the scheme must be amqp:// or amqps://")),
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url:?}: no host"))?;
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| format!("{url:?}: a user or password that is not UTF-8"))
    };
    let user = if parsed.username().is_empty() {
        "guest".to_string()
    } else {
        decode(parsed.username())?
    };
    let password = decode(parsed.password().unwrap_or("guest"))?;
    let vhost = match parsed.path() {
        "" | "/" => "/".to_string(),
        path => decode(&path[1..])?,
    };
    let port = parsed.port().unwrap_or(if tls { 5671 } else { 5672 });
    let mut args = OpenConnectionArguments::new(host, port, &user, &password);
    args.virtual_host(&vhost).heartbeat(10);
    if tls {
        // The broker's certificate is checked against the system's CAs for the URL's host,
        // as the Redis bus's is (`SSL_CERT_FILE` names a private CA).
        let config = crate::tls::client_config("")?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        args.tls_adaptor(amqprs::tls::TlsAdaptor::new(connector, host.to_string()));
    }
    Ok(args.finish())
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// The exchange of a channel: `stoa.<kind>` from `stoa:<kind>:…`.
fn exchange_of(channel: &str) -> String {
    let kind = channel
        .strip_prefix("stoa:")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("other");
    format!("stoa.{kind}")
}

const EXCHANGES: [&str; 5] = ["stoa.ctl", "stoa.e", "stoa.y", "stoa.t", "stoa.other"];

impl RabbitBus {
    /// Starts the bus's tasks on the current runtime. Only a malformed URL is an error: an
    /// unreachable broker is retried, the bus degraded meanwhile.
    pub fn start(url: &str, inbox: BusInbox) -> Result<RabbitBus, String> {
        let args = connection_arguments(url)?;
        let health = Arc::new(BusHealth::default());
        health.down("connecting".into());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (outgoing, queue) = mpsc::channel(QUEUE);
        actix_web::rt::spawn(run(args, command_rx, queue, inbox, health.clone()));
        Ok(RabbitBus {
            commands,
            outgoing,
            health,
        })
    }
}

impl Bus for RabbitBus {
    fn publish(&self, channel: &str, message: Vec<u8>) {
        if channel.len() > MAX_ROUTING_KEY
            || self
                .outgoing
                .try_send((channel.to_string(), message))
                .is_err()
        {
            self.health.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn subscribe(&self, channel: &str) {
        if channel.len() <= MAX_ROUTING_KEY {
            let _ = self.commands.send(Subscription::Add(channel.to_string()));
        }
    }

    fn unsubscribe(&self, channel: &str) {
        let _ = self
            .commands
            .send(Subscription::Remove(channel.to_string()));
    }

    fn connected(&self) -> bool {
        self.health.connected()
    }
}

/// Connects, declares, binds what is wanted, then serves commands, deliveries and
/// publications until the connection fails; again after a backoff.
async fn run(
    args: OpenConnectionArguments,
    mut commands: mpsc::UnboundedReceiver<Subscription>,
    mut outgoing: mpsc::Receiver<(String, Vec<u8>)>,
    inbox: BusInbox,
    health: Arc<BusHealth>,
) {
    let mut wanted = Wanted::default();
    let mut reconnects = Reconnects::new();
    loop {
        wanted.catch_up(&mut commands);
        match connect(&args).await {
            Ok(mut link) => {
                reconnects.up(&health, &inbox);
                let why = loop {
                    // Subscriptions first: a channel asked for before a message on it was
                    // heard is wanted when the message is looked at.
                    tokio::select! {
                        biased;
                        command = commands.recv() => {
                            let Some(command) = command else { return };
                            wanted.apply(command);
                        }
                        message = link.deliveries.recv() => {
                            let Some(message) = message else {
                                break "rabbitmq: the connection closed".to_string();
                            };
                            if let (Some(deliver), Some(content)) = (message.deliver, message.content) {
                                let channel = deliver.routing_key();
                                if wanted.contains(channel) {
                                    inbox.deliver(channel, &content);
                                }
                            }
                        }
                        item = outgoing.recv() => {
                            let Some((channel, message)) = item else { return };
                            let exchange = exchange_of(&channel);
                            let sent = link
                                .publisher
                                .basic_publish(
                                    BasicProperties::default(),
                                    message,
                                    BasicPublishArguments::new(&exchange, &channel),
                                )
                                .await;
                            match sent {
                                Ok(()) => {
                                    health.published.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    health.dropped.fetch_add(1, Ordering::Relaxed);
                                    break format!("rabbitmq: {e}");
                                }
                            }
                        }
                        failed = link.connection.listen_network_io_failure() => {
                            if failed {
                                break "rabbitmq: the connection failed".to_string();
                            }
                        }
                    }
                };
                tracing::warn!(reason = %why, "bus disconnected; serving local clients");
                health.down(why);
                let _ = link.connection.clone().close().await;
            }
            Err(e) => health.down(e),
        }
        // Wait before trying again, taking subscription changes meanwhile; what is
        // published meanwhile waits in the queue until it is full.
        if !reconnects.wait(&mut wanted, &mut commands).await {
            return;
        }
    }
}

/// One connection: a channel that consumes the node's queue, one that publishes.
struct Link {
    connection: Held<Connection>,
    /// Kept open while its deliveries are read.
    _consumer: Held<Channel>,
    publisher: Held<Channel>,
    deliveries: mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
}

/// A connection or channel of the client library, whose drop starts a task to close it:
/// when the runtime is already gone (the process ending, its tasks dropped) it is left
/// as it is instead, rather than let that start panic.
struct Held<T>(std::mem::ManuallyDrop<T>);

impl<T> Held<T> {
    fn new(inner: T) -> Held<T> {
        Held(std::mem::ManuallyDrop::new(inner))
    }
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.0) }
        }
    }
}

async fn connect(args: &OpenConnectionArguments) -> Result<Link, String> {
    let err = |e: amqprs::error::Error| format!("rabbitmq: {e}");
    let connection = tokio::time::timeout(Duration::from_secs(5), Connection::open(args))
        .await
        .map_err(|_| "rabbitmq: no answer within 5 s".to_string())?
        .map_err(err)?;
    let connection = Held::new(connection);
    let consumer = Held::new(connection.open_channel(None).await.map_err(err)?);
    let publisher = Held::new(connection.open_channel(None).await.map_err(err)?);
    for exchange in EXCHANGES {
        let mut declare = ExchangeDeclareArguments::new(exchange, "fanout");
        declare.durable(false).auto_delete(false);
        consumer
            .exchange_declare(declare.finish())
            .await
            .map_err(err)?;
    }
    let (queue, _, _) = consumer
        .queue_declare(QueueDeclareArguments::exclusive_server_named())
        .await
        .map_err(err)?
        .ok_or_else(|| "rabbitmq: the queue was not declared".to_string())?;
    for exchange in EXCHANGES {
        consumer
            .queue_bind(QueueBindArguments::new(&queue, exchange, ""))
            .await
            .map_err(err)?;
    }
    let mut consume = BasicConsumeArguments::new(&queue, "");
    consume.manual_ack(false).exclusive(true);
    let (_, deliveries) = consumer
        .basic_consume_rx(consume.finish())
        .await
        .map_err(err)?;
    Ok(Link {
        connection,
        _consumer: consumer,
        publisher,
        deliveries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_go_to_the_exchange_of_their_kind() {
        assert_eq!(exchange_of("stoa:ctl"), "stoa.ctl");
        assert_eq!(exchange_of("stoa:e:12"), "stoa.e");
        assert_eq!(exchange_of("stoa:y:7"), "stoa.y");
        assert_eq!(exchange_of("stoa:t:workspace:1"), "stoa.t");
        assert_eq!(exchange_of("elsewhere"), "stoa.other");
        for e in ["stoa:ctl", "stoa:e:1", "stoa:y:1", "stoa:t:x"] {
            assert!(EXCHANGES.contains(&exchange_of(e).as_str()));
        }
    }

    #[test]
    fn urls_name_the_broker_and_its_account() {
        assert!(connection_arguments("amqp://guest:guest@127.0.0.1:5672/").is_ok());
        assert!(connection_arguments("amqp://127.0.0.1").is_ok());
        assert!(connection_arguments("amqp://u%40x:p%2Fw@host/vh").is_ok());
        assert!(connection_arguments("amqps://guest:guest@rabbit.example/").is_ok());
        assert!(connection_arguments("redis://127.0.0.1").is_err());
        assert!(connection_arguments("not a url").is_err());
    }
}
