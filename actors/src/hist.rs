//! Histograms for the hot paths: fixed buckets of atomic counts, filled either directly or
//! through a thread's [`Local`] copy that is merged now and then, so the transport threads
//! that observe every socket write do not contend on shared counters.
//!
//! Values are whole units (microseconds for latencies, frames for queue depths); the
//! metrics exporter scales them to base units.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

/// Latency bounds in microseconds: 50 µs to 10 s.
pub const LATENCY_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Queue depth bounds in frames (an outbox holds at most `outbound_queue`, 1024 by default).
pub const DEPTH: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// Counts of observations per bucket (the last one is above every bound), their sum and
/// their number.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// What a scrape reads: cumulative counts per bound, the sum and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub bounds: &'static [u64],
    /// Cumulative, one per bound.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_US)
    }

    pub fn depth() -> Histogram {
        Histogram::new(DEPTH)
    }

    fn bucket(bounds: &[u64], value: u64) -> usize {
        bounds.partition_point(|&b| b < value)
    }

    pub fn observe(&self, value: u64) {
        self.buckets[Histogram::bucket(self.bounds, value)].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// A thread's own copy, merged into this one by [`Local::merge_into`].
    pub fn local(&self) -> Local {
        Local {
            bounds: self.bounds,
            buckets: vec![0; self.bounds.len() + 1],
            sum: 0,
            any: false,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut running = 0u64;
        for b in &self.buckets[..self.bounds.len()] {
            running += b.load(Relaxed);
            cumulative.push(running);
        }
        let count = running + self.buckets[self.bounds.len()].load(Relaxed);
        Snapshot {
            bounds: self.bounds,
            cumulative,
            count,
            sum: self.sum.load(Relaxed),
        }
    }
}

impl Default for Histogram {
    /// A latency histogram.
    fn default() -> Histogram {
        Histogram::latency()
    }
}

/// A queue-depth histogram (for `Default`).
#[derive(Debug)]
pub struct DepthHistogram(pub Histogram);

impl Default for DepthHistogram {
    fn default() -> DepthHistogram {
        DepthHistogram(Histogram::depth())
    }
}

impl std::ops::Deref for DepthHistogram {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

/// Observations kept by one thread until it merges them.
#[derive(Debug)]
pub struct Local {
    bounds: &'static [u64],
    buckets: Vec<u64>,
    sum: u64,
    any: bool,
}

impl Local {
    pub fn observe(&mut self, value: u64) {
        self.buckets[Histogram::bucket(self.bounds, value)] += 1;
        self.sum = self.sum.wrapping_add(value);
        self.any = true;
    }

    /// `n` observations of the same value.
    pub fn observe_n(&mut self, value: u64, n: u64) {
        self.buckets[Histogram::bucket(self.bounds, value)] += n;
        self.sum = self.sum.wrapping_add(value.wrapping_mul(n));
        self.any = true;
    }

    /// Adds what was observed to `shared` and starts again from zero.
    pub fn merge_into(&mut self, shared: &Histogram) {
        if !self.any {
            return;
        }
        for (i, n) in self.buckets.iter_mut().enumerate() {
            if *n > 0 {
                shared.buckets[i].fetch_add(*n, Relaxed);
                *n = 0;
            }
        }
        shared.sum.fetch_add(self.sum, Relaxed);
        self.sum = 0;
        self.any = false;
    }
}

/// Microseconds on the process's monotonic clock, for stamping a message with when it was
/// committed or received; 0 is never returned, so 0 can mean "not stamped".
pub fn stamp() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Microseconds since `stamp` (0 for an unstamped message).
pub fn since(stamp_us: u64) -> Option<u64> {
    (stamp_us != 0).then(|| stamp().saturating_sub(stamp_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_inclusive() {
        let h = Histogram::new(&[10, 100]);
        for v in [0, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4]);
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 5222);
    }

    #[test]
    fn a_local_copy_adds_up_once() {
        let h = Histogram::new(&[10, 100]);
        let mut l = h.local();
        l.observe(5);
        l.observe(50);
        l.merge_into(&h);
        l.merge_into(&h);
        l.observe(500);
        l.merge_into(&h);
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![1, 2]);
        assert_eq!((s.count, s.sum), (3, 555));
        // Many writes seen at one clock reading count as many observations.
        l.observe_n(20, 4);
        l.merge_into(&h);
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![1, 6]);
        assert_eq!((s.count, s.sum), (7, 635));
    }

    #[test]
    fn stamps_move_forward() {
        let a = stamp();
        assert!(a > 0);
        assert!(since(a).is_some());
        assert_eq!(since(0), None);
    }
}
