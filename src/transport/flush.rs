//! The flush scheduler: one task per transport thread delivers what the thread's
//! [`Inbox`] holds, in order.
//!
//! A frame for an idle socket is written at once with one `send`; when several deliveries
//! wait, their frames are queued first and each socket is written once at the end of the
//! pass. A topic reaching thousands of sockets hands each thread one [`Fanout`] and wakes
//! it once, and the thread walks its share of the subscribers as the floor program walks
//! its sockets.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use stoa_actors::outbox::{Delivery, Fanout, Inbox, Outbound, Outbox, Queued, SocketHandle};
use stoa_actors::{hist, Realtime};

use super::write::{flush_one, oldest_push, on_socket, write_push, CHUNK, SMALL};

/// Sockets a flush task writes before it lets the thread's other tasks run.
const FLUSH_TURN: usize = 128;

/// What one worker thread shares between its sockets' writers and its flush task.
pub(super) struct Worker {
    pub(super) inbox: Arc<Inbox>,
    /// Where the flush task's observations go.
    realtime: Realtime,
}

thread_local! {
    /// Made by the first socket a worker thread serves, which also starts its flush task.
    static WORKER: OnceCell<Rc<Worker>> = const { OnceCell::new() };
}

/// This thread's worker (made, and its flush task started, on first use).
pub(super) fn worker(realtime: &Realtime) -> Rc<Worker> {
    WORKER.with(|w| {
        w.get_or_init(|| {
            let worker = Rc::new(Worker {
                inbox: realtime.thread_inbox(),
                realtime: realtime.clone(),
            });
            actix_web::rt::spawn(flush(worker.clone()));
            worker
        })
        .clone()
    })
}

/// A worker thread's flush task: delivers what the thread's inbox holds, in order. The
/// last delivery of a pass goes straight to every idle socket; earlier ones (the thread
/// fell behind) are queued, and each socket they reached is written once at the end of the
/// pass with everything it holds (up to a chunk).
async fn flush(worker: Rc<Worker>) {
    let mut inbox: Vec<Delivery> = Vec::new();
    let mut listed: Vec<Arc<Outbox>> = Vec::new();
    let mut again: Vec<Arc<Outbox>> = Vec::new();
    let mut taken = VecDeque::new();
    let mut buf = Vec::with_capacity(SMALL);
    // Observed here, merged into the shared histograms once per turn, so the threads do
    // not contend on them per write.
    let mut obs = Observed::new();
    let mut turn = 0usize;
    loop {
        std::future::poll_fn(|cx| worker.inbox.poll_take(cx, &mut inbox)).await;
        let mut entries = std::mem::take(&mut inbox);
        let last = entries.len().saturating_sub(1);
        for (i, delivery) in entries.drain(..).enumerate() {
            let direct = i == last;
            match delivery {
                Delivery::One(outbox, item) => {
                    if direct {
                        if let Some(handle) = outbox.begin_write() {
                            taken.push_back(item);
                            write_taken(
                                &outbox, handle, &mut taken, &mut buf, &mut obs, &mut again,
                            );
                            turn += 1;
                            continue;
                        }
                    }
                    if outbox.queue(item) == Queued::List {
                        listed.push(outbox);
                    }
                    turn += 1;
                }
                Delivery::Many(fanout) => {
                    let mut done = 0;
                    loop {
                        let to = fan(&fanout, done, direct, &mut buf, &mut obs, &mut listed);
                        turn += to - done;
                        done = to;
                        if done == fanout.targets.len() {
                            break;
                        }
                        turn = 0;
                        obs.merge(&worker.realtime);
                        // Readers on this thread get their turn in a long fan-out.
                        actix_web::rt::task::yield_now().await;
                    }
                }
                Delivery::Close(outbox, reason) => {
                    outbox.close_now(reason, false);
                    turn += 1;
                }
            }
            if turn >= FLUSH_TURN {
                turn = 0;
                obs.merge(&worker.realtime);
                actix_web::rt::task::yield_now().await;
            }
        }
        inbox = entries;
        worker.inbox.delivered();
        // The sockets that had frames queued in this pass (or queued while written): one
        // send each.
        listed.append(&mut again);
        while !listed.is_empty() {
            for outbox in listed.drain(..) {
                let Some(handle) = outbox.flush_take(&mut taken, CHUNK) else {
                    continue;
                };
                write_taken(&outbox, handle, &mut taken, &mut buf, &mut obs, &mut again);
                turn += 1;
                if turn >= FLUSH_TURN {
                    turn = 0;
                    obs.merge(&worker.realtime);
                    actix_web::rt::task::yield_now().await;
                }
            }
            std::mem::swap(&mut listed, &mut again);
        }
        obs.merge(&worker.realtime);
    }
}

/// Writes what `taken` holds (what [`Outbox::begin_write`] or [`Outbox::flush_take`] gave
/// the thread) with one send, and reports to the outbox; lists it in `again` when frames
/// came meanwhile.
fn write_taken(
    outbox: &Arc<Outbox>,
    handle: SocketHandle,
    taken: &mut VecDeque<Outbound>,
    buf: &mut Vec<u8>,
    obs: &mut Observed,
    again: &mut Vec<Arc<Outbox>>,
) {
    obs.depth.observe(taken.len() as u64);
    let born = oldest_push(taken);
    let unwritten = on_socket(handle, |socket| flush_one(&socket, taken, buf));
    if unwritten.is_none() {
        if let Some(us) = born.and_then(hist::since) {
            obs.latency.observe(us);
        }
    }
    if outbox.flush_done(unwritten) {
        again.push(outbox.clone());
    }
    taken.clear();
}

/// Delivers a fan-out to its targets from `from` on, at most [`FLUSH_TURN`] of them; where
/// it stopped. `direct`: an idle socket is written at once; otherwise every frame is queued
/// and the outboxes it reached idle are put in `listed`.
fn fan(
    fanout: &Fanout,
    from: usize,
    direct: bool,
    buf: &mut Vec<u8>,
    obs: &mut Observed,
    listed: &mut Vec<Arc<Outbox>>,
) -> usize {
    let targets = &fanout.targets;
    let to = (from + FLUSH_TURN).min(targets.len());
    let mut written = 0;
    for i in from..to {
        // Outboxes are scattered in memory: the one a few places ahead is fetched while
        // this one is written.
        if let Some(next) = targets.get(i + PREFETCH_AHEAD) {
            prefetch(Arc::as_ptr(&next.outbox));
        }
        let Some(t) = targets.get(i) else { break };
        if fanout.skips(t.id) {
            continue;
        }
        // The frame as a queue holds it, made only when it is queued.
        let item = || Outbound::Push {
            head: t.head.clone(),
            tail: fanout.tail.clone(),
            born: fanout.born,
        };
        if direct {
            if let Some(handle) = t.outbox.begin_write() {
                let unwritten = on_socket(handle, |socket| {
                    write_push(&socket, &t.head, &fanout.tail, buf)
                })
                .map(|done| (VecDeque::from([item()]), done));
                written += u64::from(unwritten.is_none());
                if t.outbox.flush_done(unwritten) {
                    listed.push(t.outbox.clone());
                }
                continue;
            }
        }
        if t.outbox.queue(item()) == Queued::List {
            listed.push(t.outbox.clone());
        }
    }
    if written > 0 {
        // One clock reading for the turn's writes, taken after them: the latency of each
        // is at most what is recorded.
        obs.depth.observe_n(1, written);
        if let Some(us) = hist::since(fanout.born) {
            obs.latency.observe_n(us, written);
        }
    }
    to
}

/// What the flush task observed since it last merged into the node's histograms.
struct Observed {
    latency: hist::Local,
    depth: hist::Local,
}

impl Observed {
    fn new() -> Observed {
        Observed {
            latency: hist::Histogram::latency().local(),
            depth: hist::Histogram::depth().local(),
        }
    }

    fn merge(&mut self, realtime: &Realtime) {
        self.latency.merge_into(&realtime.stats().fanout_latency);
        self.depth.merge_into(&realtime.stats().outbound_depth);
    }
}

/// How far ahead of the target being written the flush task asks for the next one's
/// outbox.
const PREFETCH_AHEAD: usize = 4;

/// Asks the processor to bring the start of `*p` into its cache (no effect elsewhere).
#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it neither reads into the program nor faults, whatever
    // the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            p.cast::<i8>().wrapping_add(64),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
