//! What systemd is told: `READY=1`, `STATUS=` lines, `WATCHDOG=1` while the daemon makes
//! progress, `STOPPING=1`. Without a notify socket (not under systemd) nothing is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How long the daemon may go without a sign of progress before the watchdog pings stop
/// and systemd restarts it. Idle, the loop beats every [`super::NAP`]; in a cycle, every
/// pass of the plan, every 2,000 entities it reads and every batch beat. One statement
/// may still run for minutes on a very large store: the sorted read of every account's
/// profile took 7 of the customer pass's 10 s at 100,000 customers, and that pass took
/// 6 minutes at 1,000,000 (BENCHMARKS.md).
pub const STALL_LIMIT: Duration = Duration::from_secs(15 * 60);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "systemd notification not delivered");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading(status: &str) {
    send(&[NotifyState::Reloading, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The time of the loop's latest sign of progress.
pub struct Heartbeat {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Heartbeat {
    pub fn new() -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// Pings systemd's watchdog at half its interval while the heartbeat is fresh; a stalled
/// loop (a statement hanging on a dead network, a deadlock) stops the pings, and systemd
/// restarts the service. Nothing happens when the unit sets no `WatchdogSec=`.
pub fn spawn_watchdog(heartbeat: Arc<Heartbeat>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()? / 2;
    tracing::debug!(interval_ms = interval.as_millis() as u64, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut stalled = false;
        loop {
            let age = heartbeat.age();
            if age < STALL_LIMIT {
                send(&[NotifyState::Watchdog]);
                stalled = false;
            } else if !stalled {
                stalled = true;
                tracing::error!(
                    seconds_without_progress = age.as_secs(),
                    "no progress: the systemd watchdog is no longer fed, so systemd will restart the service"
                );
            }
            tokio::time::sleep(interval).await;
        }
    }))
}
