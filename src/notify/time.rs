//! Time for the delivery manager, passed in: a monotonic clock and a sleep.
//!
//! `klaxon run` uses [`RealTimer`] (tokio's clock). Tests use
//! [`ManualTimer`]: every sleep advances its clock at once and is recorded,
//! so a test of "429 with Retry-After: 30" checks the 30 s wait without
//! waiting. The rate limiters read the same clock ([`GovClock`]), so a
//! rate-limited queue drains in virtual time too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

use super::BoxFuture;

pub trait Timer: Send + Sync + 'static {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    /// Waits `d` (on this timer's clock).
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// Tokio's clock.
pub struct RealTimer {
    origin: tokio::time::Instant,
}

impl Default for RealTimer {
    fn default() -> Self {
        RealTimer {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Timer for RealTimer {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when someone sleeps on it. Each sleep is
/// recorded and returns after yielding (and a real pause of `real_pause`,
/// 1 ms by default, so HTTP servers in the test get to run).
#[derive(Clone, Default)]
pub struct ManualTimer {
    nanos: Arc<AtomicU64>,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl ManualTimer {
    pub fn new() -> Self {
        Self::default()
    }
    /// Every sleep asked for so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().expect("not poisoned").clone()
    }
    /// Virtual time elapsed.
    pub fn now_elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Timer for ManualTimer {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.sleeps.lock().expect("not poisoned").push(d);
        self.advance(d);
        Box::pin(async {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        })
    }
}

/// A [`Timer`] as a governor clock.
#[derive(Clone)]
pub struct GovClock(pub Arc<dyn Timer>);

impl Clock for GovClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.now())
    }
}

/// Nanos is governor's own instant for relative clocks.
pub fn since(later: Nanos, earlier: Nanos) -> Duration {
    later.duration_since(earlier).into()
}
