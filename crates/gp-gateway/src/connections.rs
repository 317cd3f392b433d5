//! What a client connection may hold: the caps on open connections (overall and per
//! peer address), the idle timer that closes a connection with no request in flight,
//! and the accept back-off when the process runs out of file descriptors.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::forwarded::Cidr;
use crate::metrics::Metrics;

/// How often a repeated warning (a cap hit, accept failing) is logged at most: a flood
/// must not turn into a flood of log lines.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Which cap refused a connection (the metric's `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections`.
    Total,
    /// `max_connections_per_peer`.
    Peer,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Peer => "peer",
        }
    }
}

/// A warning logged at most once per [`WARN_EVERY`], with how many were held back.
#[derive(Debug)]
pub struct QuietWarning {
    born: Instant,
    /// Milliseconds after `born` of the last line logged (`u64::MAX`: never).
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Default for QuietWarning {
    fn default() -> Self {
        Self {
            born: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            held_back: AtomicU64::new(0),
        }
    }
}

impl QuietWarning {
    /// Whether to log now; if so, how many occurrences were held back since the last line.
    pub fn due(&self) -> Option<u64> {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = WARN_EVERY.as_millis() as u64;
        let due = last == u64::MAX || now.saturating_sub(last) >= every;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// The connection caps of one listener.
#[derive(Debug)]
pub struct Limits {
    /// `main` or `admin`, in logs and metrics.
    listener: &'static str,
    max_total: usize,
    max_per_peer: usize,
    /// Peers the per-peer cap does not apply to (the trusted proxies).
    exempt: Vec<Cidr>,
    counts: Mutex<Counts>,
    /// Woken when the last connection closes (shutdown waits for it).
    drained: tokio::sync::Notify,
    warning: QuietWarning,
    metrics: Arc<Metrics>,
}

/// The peer key the per-peer cap counts: an IPv6 client usually holds a whole /64, so
/// its connections count together; an IPv4-mapped address counts as the IPv4 one.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Limits {
    pub fn new(
        listener: &'static str,
        max_total: usize,
        max_per_peer: usize,
        exempt: Vec<Cidr>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            listener,
            max_total,
            max_per_peer,
            exempt,
            counts: Mutex::default(),
            drained: tokio::sync::Notify::new(),
            warning: QuietWarning::default(),
            metrics,
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Nothing panics while holding it; recover the counts regardless.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `peer`, held until the connection closes; or
    /// the cap it would break, counted and (rate-limited) logged.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let key = peer_key(peer);
        let capped = !self.exempt.iter().any(|c| c.contains(peer));
        let refused = {
            let mut counts = self.counts();
            let from_peer = counts.per_peer.get(&key).copied().unwrap_or(0);
            if counts.total >= self.max_total {
                Some(Refused::Total)
            } else if capped && from_peer >= self.max_per_peer {
                Some(Refused::Peer)
            } else {
                counts.total += 1;
                *counts.per_peer.entry(key).or_insert(0) += 1;
                None
            }
        };
        match refused {
            None => Ok(Slot {
                limits: self.clone(),
                key,
            }),
            Some(why) => {
                self.metrics.connection_refused(self.listener, why.label());
                if let Some(held_back) = self.warning.due() {
                    let (limit, max) = match why {
                        Refused::Total => ("server.max_connections", self.max_total),
                        Refused::Peer => ("server.max_connections_per_peer", self.max_per_peer),
                    };
                    tracing::warn!(
                        listener = self.listener,
                        limit,
                        max,
                        %peer,
                        refused_since_last_warning = held_back,
                        "connection cap reached: new connections are closed at once"
                    );
                }
                Err(why)
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Returns once no connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted connection's place under the caps; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let empty = {
            let mut counts = self.limits.counts();
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.per_peer.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    counts.per_peer.remove(&self.key);
                }
            }
            counts.total == 0
        };
        if empty {
            self.limits.drained.notify_waiters();
        }
    }
}

/// How long a connection may go without a request in flight.
#[derive(Debug, Clone, Copy)]
pub struct IdleLimits {
    /// After a request: `server.idle_timeout_ms`.
    pub between: Duration,
    /// Before the first: the shorter of that and `server.header_read_timeout_ms`.
    pub first: Duration,
}

impl IdleLimits {
    pub fn new(idle: Duration, header_read: Duration) -> Self {
        Self {
            between: idle,
            first: idle.min(header_read),
        }
    }
}

/// Whether a connection has a request in flight, and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    /// Tokio's clock, so tests can run it paused.
    born: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Whether any request has started on it.
    served: AtomicBool,
    /// Milliseconds after `born` when a request last started or ended.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            born: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard is dropped (the response is
    /// handed to hyper, or the request is cancelled).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        self.touch();
        Busy(self.clone())
    }

    /// Returns once the connection has had no request in flight for `limits.between`, or,
    /// before its first request, for `limits.first` (a client that connects means to ask at once; one
    /// that never does holds a descriptor for nothing). Counted in requests, not bytes:
    /// an HTTP/2 ping or a stray byte does not keep a connection.
    pub async fn idle_for(&self, limits: IdleLimits) {
        loop {
            let limit = if self.served.load(Ordering::SeqCst) {
                limits.between
            } else {
                limits.first
            };
            let now = tokio::time::Instant::now();
            let quiet_since = if self.in_flight.load(Ordering::SeqCst) > 0 {
                now
            } else {
                self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
            };
            let deadline = quiet_since + limit;
            if deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The pause after a failed `accept`: out of file descriptors the listener stays
/// readable, so retrying at once would spin. Doubles from 10 ms to 1 s while accepts
/// keep failing; back to the start after one succeeds.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
    warning: QuietWarning,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_FIRST,
            warning: QuietWarning::default(),
        }
    }
}

impl AcceptBackoff {
    /// An accept succeeded.
    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// An accept failed: logs (rate-limited) and sleeps.
    pub async fn failed(&mut self, listener: &'static str, error: &std::io::Error) {
        if let Some(held_back) = self.warning.due() {
            tracing::warn!(
                listener,
                error = %error,
                failed_since_last_warning = held_back,
                "accept failed (out of file descriptors?): backing off"
            );
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(total: usize, per_peer: usize, exempt: &[&str]) -> Arc<Limits> {
        Limits::new(
            "main",
            total,
            per_peer,
            exempt.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            Arc::default(),
        )
    }

    #[test]
    fn caps_count_per_peer_and_overall_and_give_slots_back() {
        let l = limits(3, 2, &["10.0.0.0/8"]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = l.admit(a).unwrap();
        let _s2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::Peer);
        let _s3 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Refused::Total);
        drop(s1);
        assert_eq!(l.open(), 2);
        let _s4 = l.admit(a).unwrap();
        assert!(
            l.metrics.render().contains(
                "gp_gateway_connections_refused_total{listener=\"main\",limit=\"peer\"} 1"
            )
        );
    }

    #[test]
    fn trusted_proxies_skip_the_per_peer_cap_and_ipv6_counts_by_64() {
        let l = limits(10, 1, &["10.0.0.0/8"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let _p = (l.admit(proxy).unwrap(), l.admit(proxy).unwrap());
        let _v6 = l.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            l.admit("2001:db8::2".parse().unwrap()).unwrap_err(),
            Refused::Peer
        );
        let _mapped = l.admit("::ffff:192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(
            l.admit("192.0.2.9".parse().unwrap()).unwrap_err(),
            Refused::Peer
        );
    }

    #[test]
    fn a_repeated_warning_is_logged_once_per_period() {
        let w = QuietWarning::default();
        assert_eq!(w.due(), Some(0));
        assert_eq!(w.due(), None);
        assert_eq!(w.due(), None);
        w.last_ms.store(0, Ordering::Relaxed);
        // Not yet 10 s since the (pretend) last line at 0 ms.
        assert_eq!(w.due(), None);
    }

    #[tokio::test]
    async fn idle_counts_from_the_last_request() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_millis(100);
        let busy = a.begin();
        // A request in flight keeps the connection however long it takes.
        assert!(
            tokio::time::timeout(limit * 3, a.idle_for(IdleLimits::new(limit, limit)))
                .await
                .is_err()
        );
        drop(busy);
        let started = tokio::time::Instant::now();
        a.idle_for(IdleLimits::new(limit, limit)).await;
        assert!(started.elapsed() >= limit);
    }

    #[tokio::test]
    async fn a_connection_must_ask_its_first_request_within_the_first_limit() {
        let a = Arc::new(Activity::default());
        let started = tokio::time::Instant::now();
        let limits = IdleLimits::new(Duration::from_secs(60), Duration::from_millis(50));
        a.idle_for(limits).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        // Once it has asked, the idle limit applies.
        drop(a.begin());
        let idle = a.idle_for(limits);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), idle)
                .await
                .is_err()
        );
    }
}
