//! The fence in front of the cloud: whether this replica may still start a DELETE, and by when a
//! call it started must be over. Leader election grants it after each renewal of the Lease and
//! revokes it when leadership is lost; shutdown stops it. [`super::CloudApi`] consults it right
//! before each call. No I/O (it only sleeps until a deadline in [`Fence::cut`]).

use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why the fence refused a DELETE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this replica does not hold the leader Lease")]
    NotLeader,
    #[error("this replica lost leadership: its Lease was not renewed within the renew deadline")]
    RenewOverdue,
    #[error("the controller is shutting down")]
    ShuttingDown,
}

/// What the fence knows. `Copy`, so that a decision reads one consistent value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    /// Without leader election every DELETE may start.
    fenced: bool,
    /// While fenced: DELETEs may start before this instant (last renewal + renew deadline).
    admit_until: Option<Instant>,
    /// While fenced: a DELETE must be over by this instant (before the Lease could lapse).
    finish_by: Option<Instant>,
    /// Set on shutdown: no DELETE starts, and calls still running at this instant are cut.
    cut_at: Option<Instant>,
}

/// A cheap handle; clones share one state.
#[derive(Clone, Debug)]
pub struct Fence {
    state: Arc<watch::Sender<State>>,
}

impl Default for Fence {
    fn default() -> Self {
        Self::unfenced()
    }
}

impl Fence {
    fn with(state: State) -> Self {
        Self { state: Arc::new(watch::Sender::new(state)) }
    }

    /// A fence that admits every DELETE until shutdown: no leader election.
    pub fn unfenced() -> Self {
        Self::with(State { fenced: false, admit_until: None, finish_by: None, cut_at: None })
    }

    /// A fence that admits no DELETE until leader election [grants](Self::grant) it.
    pub fn closed() -> Self {
        Self::with(State { fenced: true, admit_until: None, finish_by: None, cut_at: None })
    }

    /// After a renewal of the Lease: DELETEs may start until `admit_until` and must be over by
    /// `finish_by`.
    pub fn grant(&self, admit_until: Instant, finish_by: Instant) {
        self.state.send_modify(|s| {
            s.admit_until = Some(admit_until);
            s.finish_by = Some(finish_by.max(admit_until));
        });
    }

    /// Leadership is lost or given up: no DELETE starts until the next grant.
    pub fn revoke(&self) {
        self.state.send_modify(|s| {
            s.admit_until = None;
        });
    }

    /// Shutdown: no DELETE starts from now on, and calls still running at `cut_at` are cut.
    pub fn stop(&self, cut_at: Instant) {
        self.state.send_modify(|s| s.cut_at = Some(s.cut_at.map_or(cut_at, |c| c.min(cut_at))));
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.state.borrow().cut_at.is_some()
    }

    /// Whether a DELETE may start at `now`; if so, the instant it must be over by (none when
    /// unbounded).
    pub fn admit(&self, now: Instant) -> Result<Option<Instant>, Refusal> {
        decide(*self.state.borrow(), now)
    }

    /// Completes at the instant shutdown cuts the calls still running; never, before shutdown.
    pub async fn cut(&self) {
        let mut rx = self.state.subscribe();
        loop {
            let cut_at = rx.borrow_and_update().cut_at;
            match cut_at {
                Some(at) => return tokio::time::sleep_until(at).await,
                None => {
                    if rx.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

fn decide(s: State, now: Instant) -> Result<Option<Instant>, Refusal> {
    if s.cut_at.is_some() {
        return Err(Refusal::ShuttingDown);
    }
    if !s.fenced {
        return Ok(None);
    }
    match s.admit_until {
        None => Err(Refusal::NotLeader),
        Some(until) if now >= until => Err(Refusal::RenewOverdue),
        Some(_) => Ok(s.finish_by),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_fence_admits_only_between_grant_and_deadline() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(Fence::unfenced().admit(now), Ok(None));
        let fence = Fence::closed();
        assert_eq!(fence.admit(now), Err(Refusal::NotLeader));
        fence.grant(now + s(10), now + s(14));
        assert_eq!(fence.admit(now + s(9)), Ok(Some(now + s(14))));
        assert_eq!(fence.admit(now + s(10)), Err(Refusal::RenewOverdue));
        fence.revoke();
        assert_eq!(fence.admit(now), Err(Refusal::NotLeader));
        fence.grant(now + s(10), now + s(14));
        fence.stop(now + s(20));
        assert!(fence.stopping());
        assert_eq!(fence.admit(now), Err(Refusal::ShuttingDown));
    }

    #[tokio::test]
    async fn cut_completes_at_the_shutdown_deadline() {
        let fence = Fence::unfenced();
        let waiter = tokio::spawn({
            let fence = fence.clone();
            async move { fence.cut().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        let started = Instant::now();
        fence.stop(started + Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
