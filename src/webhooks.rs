//! Outgoing webhooks: each endpoint follows its workspace's event log in offset order, at
//! least once, signed; one node at a time delivers an endpoint's stream (a lease in the
//! database); targets on private, loopback or link-local addresses are refused, by name
//! after resolution and on every redirect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::domain::now_ms;
use crate::store::{Store, Webhook, WebhookDelivery};

/// Redirects followed at most, each checked like the first address.
const MAX_REDIRECTS: usize = 3;
/// Endpoints taken per pass, and events read per endpoint per read.
const ENDPOINTS_PER_PASS: u32 = 32;
const EVENTS_PER_READ: u32 = 100;
/// How often the deliverer looks for work when nothing wakes it (events committed through
/// another node wake only that node's deliverer).
const POLL: Duration = Duration::from_millis(100);

/// Woken by every event committed through this node.
static COMMITTED: Notify = Notify::const_new();

/// An event was committed through this node: the deliverer looks for work at once.
pub fn events_committed() {
    COMMITTED.notify_one();
}
/// The longest answer body read (and kept in the log, cut) from an endpoint.
const MAX_ERROR_CHARS: usize = 300;

/// `[webhooks]` as the deliverer uses it.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    pub allow_private_targets: bool,
    /// Private ranges allowed all the same (an internal service, say).
    pub allowed_targets: Vec<ipnet::IpNet>,
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub pause_after_failures: u32,
    pub lease: Duration,
    pub deliveries_kept: u32,
}

/// Whether `ip` is an address a webhook may reach without `allow_private_targets`: not
/// loopback, private, link-local (cloud metadata lives at 169.254.169.254), shared (CGNAT),
/// unspecified, multicast, broadcast, documentation or reserved, in IPv4 or IPv6
/// (including IPv4 written as IPv6).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || (first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64: an IPv4 inside
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
        }
    }
}

/// Which addresses webhooks may reach.
#[derive(Debug, Clone)]
pub struct Guard {
    allow_private: bool,
    allowed: Vec<ipnet::IpNet>,
}

impl Guard {
    pub fn new(policy: &WebhookPolicy) -> Guard {
        Guard {
            allow_private: policy.allow_private_targets,
            allowed: policy.allowed_targets.clone(),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// Checks a target before it is registered: http or https, a host, and every address
    /// the host resolves to now permitted (a name that does not resolve passes: each
    /// delivery resolves it through the guard). The error says why not.
    pub async fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the URL must be http or https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not carry a user name or password".into());
        }
        let host = url.host().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            // A name that does not resolve yet is let through: every delivery resolves it
            // again, through the guard.
            url::Host::Domain(name) => match tokio::net::lookup_host((name, port)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(_) => return Ok(()),
            },
        };
        if let Some(ip) = addrs.iter().find(|ip| !self.permits(**ip)) {
            return Err(format!(
                "{host} is {ip}, a private, loopback or link-local address: webhooks may not \
                 reach it (webhooks.allow_private_targets, webhooks.allowed_targets)"
            ));
        }
        Ok(())
    }
}

/// The resolver of the webhook client: a name's addresses, only those permitted. The
/// connection is made to what this returned, so a name cannot resolve to a public address
/// when checked and a private one when used.
struct GuardedResolver(Guard);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no address webhooks may reach").into();
                return Err(refused);
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// What became of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends signed requests to endpoints, through the guard.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    guard: Guard,
}

impl Sender {
    pub fn new(policy: &WebhookPolicy) -> Result<Sender, reqwest::Error> {
        let guard = Guard::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .user_agent(concat!("Stoa-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .build()?;
        Ok(Sender { client, guard })
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// POSTs one event to `hook`'s URL, following redirects (each target checked again).
    pub async fn send(
        &self,
        hook: &Webhook,
        event_offset: i64,
        kind: &str,
        body: &[u8],
    ) -> Outcome {
        let began = Instant::now();
        let done = |status: Option<u16>, error: Option<String>| Outcome {
            status,
            error,
            duration: began.elapsed(),
        };
        let mut url = match reqwest::Url::parse(&hook.url) {
            Ok(url) => url,
            Err(e) => return done(None, Some(format!("invalid URL: {e}"))),
        };
        for hop in 0..=MAX_REDIRECTS {
            if let Err(refused) = self.guard.check_literal(&url) {
                return done(None, Some(refused));
            }
            let t = now_ms() / 1000;
            let sent = self
                .client
                .post(url.clone())
                .header("content-type", "application/json")
                .header("stoa-signature", signature(&hook.secret, t, body))
                .header("stoa-webhook-id", hook.id.to_string())
                .header("stoa-event-offset", event_offset.to_string())
                .header("stoa-event-kind", kind)
                .header("idempotency-key", format!("{}-{event_offset}", hook.id))
                .body(body.to_vec())
                .send()
                .await;
            let res = match sent {
                Ok(res) => res,
                Err(e) => return done(None, Some(describe(&e))),
            };
            let status = res.status();
            if status.is_redirection() && hop < MAX_REDIRECTS {
                let next = res
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                match next {
                    Some(next) => {
                        url = next;
                        continue;
                    }
                    None => {
                        return done(
                            Some(status.as_u16()),
                            Some("a redirect without a usable Location".into()),
                        )
                    }
                }
            }
            if status.is_success() {
                return done(Some(status.as_u16()), None);
            }
            let text = res.text().await.unwrap_or_default();
            let error = if status.is_redirection() {
                format!("more than {MAX_REDIRECTS} redirects")
            } else {
                text.chars().take(MAX_ERROR_CHARS).collect()
            };
            return done(Some(status.as_u16()), Some(error));
        }
        done(None, Some(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

impl Guard {
    /// A URL whose host is an address is checked here (names are checked by the resolver).
    fn check_literal(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("refused: {} is not http or https", url.scheme()));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("refused: no host".into()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "refused: {ip} is a private, loopback or link-local address"
            ))
        }
    }
}

/// An error of the client in a few words (the resolver's refusal included).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// The body of a delivery: the event as the events API shows it, with its workspace and
/// endpoint.
pub fn body_of(hook: &Webhook, event: &crate::store::Event) -> Vec<u8> {
    let view = crate::views::EventView::from(event);
    let mut value = serde_json::to_value(&view).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("workspace_id".into(), event.workspace_id.into());
        map.insert("webhook_id".into(), hook.id.into());
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The wait before attempt `failures + 1`: the base doubled per failure, at most the
/// ceiling, with up to a quarter taken off at random (so endpoints that failed together do
/// not come back together).
pub fn backoff(policy: &WebhookPolicy, failures: u32) -> Duration {
    let exp = policy
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(policy.backoff_max);
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    exp.mul_f64(1.0 - jitter)
}

/// What the REST API needs of webhooks: the policy, and a client for redeliveries.
#[derive(Clone)]
pub struct WebhookApi {
    pub sender: Sender,
    pub policy: WebhookPolicy,
    pub max_per_workspace: u32,
}

impl WebhookApi {
    pub fn new(
        policy: WebhookPolicy,
        max_per_workspace: u32,
    ) -> Result<WebhookApi, reqwest::Error> {
        Ok(WebhookApi {
            sender: Sender::new(&policy)?,
            policy,
            max_per_workspace,
        })
    }
}

/// Starts delivering on the current runtime, as this node, until it shuts down.
pub fn start(
    store: Arc<dyn Store>,
    policy: WebhookPolicy,
    realtime: crate::realtime::Realtime,
) -> Result<(), reqwest::Error> {
    let sender = Sender::new(&policy)?;
    let worker = Worker {
        store,
        sender,
        policy,
        node: realtime.node_id().to_string(),
        realtime,
    };
    tokio::spawn(worker.run());
    Ok(())
}

struct Worker {
    store: Arc<dyn Store>,
    sender: Sender,
    policy: WebhookPolicy,
    node: String,
    realtime: crate::realtime::Realtime,
}

impl Worker {
    async fn run(self) {
        while !self.realtime.is_shutting_down() {
            let busy = match self.pass().await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery pass failed; trying again");
                    false
                }
            };
            if !busy {
                let _ = tokio::time::timeout(POLL, COMMITTED.notified()).await;
            }
        }
    }

    /// Delivers what is due of every endpoint this node holds or can take; whether it did
    /// anything.
    async fn pass(&self) -> Result<bool, crate::store::StoreError> {
        let now = now_ms();
        let lease = i64::try_from(self.policy.lease.as_millis()).unwrap_or(i64::MAX);
        let hooks = self
            .store
            .lease_due_webhooks(
                &self.node,
                now,
                now.saturating_add(lease),
                ENDPOINTS_PER_PASS,
            )
            .await?;
        if hooks.is_empty() {
            return Ok(false);
        }
        let streams = hooks.iter().map(|hook| self.stream(hook));
        for result in futures_util::future::join_all(streams).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "webhook delivery failed to record");
            }
        }
        Ok(true)
    }

    /// Delivers `hook`'s events in order until it is caught up, an attempt fails, or half
    /// its lease has gone (the next pass renews the lease and goes on). The position and
    /// the log are written every `BOOKKEEPING_EVERY` successes (and at every stop), not after
    /// each: a node that dies sends at most that many again.
    async fn stream(&self, hook: &Webhook) -> Result<(), crate::store::StoreError> {
        let until = Instant::now() + self.policy.lease / 2;
        let mut book = Book {
            worker: self,
            hook,
            position: hook.delivered_offset,
            written: hook.delivered_offset,
            log: Vec::new(),
        };
        // Failed attempts in a row at the next event to deliver.
        let mut failures = hook.failures;
        loop {
            let events = self
                .store
                .log_after(hook.workspace_id, book.position, EVENTS_PER_READ)
                .await?;
            if events.is_empty() {
                book.write().await?;
                return Ok(());
            }
            for event in &events {
                if !hook.kinds.is_empty() && !hook.kinds.contains(&event.kind) {
                    book.position = event.offset;
                    continue;
                }
                let body = body_of(hook, event);
                let outcome = self
                    .sender
                    .send(hook, event.offset, &event.kind, &body)
                    .await;
                book.log.push(WebhookDelivery {
                    id: 0,
                    webhook_id: hook.id,
                    event_offset: event.offset,
                    event_kind: event.kind.clone(),
                    attempt: failures + 1,
                    status: outcome.status.map(i64::from),
                    error: outcome.error.clone(),
                    duration_ms: i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX),
                    redelivery: false,
                    at: now_ms(),
                });
                if !outcome.ok() {
                    if !book.write().await? {
                        return Ok(());
                    }
                    let failures = failures.saturating_add(1);
                    let failures_u32 = u32::try_from(failures).unwrap_or(u32::MAX);
                    let wait = backoff(&self.policy, failures_u32);
                    let next = now_ms()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    let pause = (failures_u32 >= self.policy.pause_after_failures).then(|| {
                        format!(
                            "{failures} failed attempts in a row at offset {}",
                            event.offset
                        )
                    });
                    self.store
                        .webhook_failed(hook.id, &self.node, failures, next, pause.as_deref())
                        .await?;
                    return Ok(());
                }
                book.position = event.offset;
                failures = 0;
                if book.log.len() >= BOOKKEEPING_EVERY && !book.write().await? {
                    return Ok(());
                }
                if Instant::now() > until {
                    book.write().await?;
                    return Ok(());
                }
            }
            if Instant::now() > until {
                book.write().await?;
                return Ok(());
            }
        }
    }
}

/// Successes logged and the position moved at most this many deliveries apart.
const BOOKKEEPING_EVERY: usize = 64;

/// What a stream has done and not yet written.
struct Book<'a> {
    worker: &'a Worker,
    hook: &'a Webhook,
    /// Dealt with up to here (delivered, or not of the endpoint's kinds).
    position: i64,
    /// The position as written.
    written: i64,
    log: Vec<WebhookDelivery>,
}

impl Book<'_> {
    /// Writes the log and the position; false when the lease went to another node.
    async fn write(&mut self) -> Result<bool, crate::store::StoreError> {
        let store = &self.worker.store;
        if !self.log.is_empty() {
            store
                .record_webhook_deliveries(&self.log, self.worker.policy.deliveries_kept)
                .await?;
            self.log.clear();
        }
        if self.position > self.written {
            if !store
                .webhook_delivered(self.hook.id, &self.worker.node, self.position)
                .await?
            {
                return Ok(false);
            }
            self.written = self.position;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_mapped_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // An HMAC-SHA256 computed elsewhere (Python's hmac) for key "k", "1700000000.{}".
        assert_eq!(
            signature("k", 1_700_000_000, b"{}"),
            "t=1700000000,v1=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
        );
    }
}
