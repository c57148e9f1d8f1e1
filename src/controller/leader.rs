//! Leader election over a `coordination.k8s.io` Lease, feeding the [`Fence`] that lets this
//! replica delete only while its Lease is certainly its own. Does Kubernetes I/O.
//!
//! The leader renews every [`RETRY_PERIOD`]; each renewal stamps `renewTime` with this replica's
//! clock just before it is sent, so the Lease is ours until at least that instant plus the lease
//! duration, whatever the answer's delay. After a renewal sent at `t` the fence admits DELETEs
//! until `t + renew deadline` and requires each to be over by `t + duration - SKEW`: a replica
//! that cannot renew (API server unreachable, process paused) stops deleting before any standby
//! may take the Lease. A standby checks the Lease every [`RETRY_PERIOD`], so a Lease released at
//! shutdown is taken within about that long, instead of after it would have lapsed.

use crate::purge::Fence;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the leader renews and a standby checks whether the Lease is free.
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);
/// Allowed difference between this replica's clock and a standby's, taken off the end of the Lease.
pub const SKEW: Duration = Duration::from_secs(1);

/// How long a Lease lasts and when its holder must stop deleting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// A standby may take the Lease this long after its last renewal.
    pub duration: Duration,
    /// A leader that has not renewed for this long stops deleting and steps down. Shorter than
    /// `duration - SKEW` minus the longest DELETE, which the fence bounds to what is left.
    pub renew_deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading Lease {name}")]
    GetLease {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing Lease {name}")]
    WriteLease {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the request for Lease {name} took longer than {limit:?}")]
    TimeOutLease { name: String, limit: Duration },
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    fence: Fence,
    /// Set to 1 while this replica leads, 0 otherwise.
    gauge: Option<Gauge>,
    /// Another holder's Lease as this replica last saw it, and when by its own clock.
    observed: std::sync::Mutex<Option<Observed>>,
}

/// What of another replica's Lease tells whether it is still renewed: any write changes one of
/// these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    pub renew_time: Option<Timestamp>,
    pub resource_version: Option<String>,
}

/// A [`LeaseRecord`] and the moment, on this replica's monotonic clock, it was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    record: LeaseRecord,
    since: Instant,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
        fence: Fence,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            fence,
            observed: std::sync::Mutex::new(None),
            gauge: None,
        }
    }

    /// Shows whether this replica leads in `gauge` (1 or 0), as it publishes it.
    pub fn with_gauge(self, gauge: Gauge) -> Self {
        Self { gauge: Some(gauge), ..self }
    }

    /// Publishes whether this replica leads, to `leading` and the gauge.
    fn publish(&self, leading: &watch::Sender<bool>, is_leader: bool) {
        if let Some(gauge) = &self.gauge {
            gauge.set(i64::from(is_leader));
        }
        leading.send_if_modified(|l| std::mem::replace(l, is_leader) != is_leader);
    }

    /// Contends for the Lease until `stop` turns true, publishing whether this replica leads on
    /// `leading` and granting or revoking the fence; then gives the Lease up if it holds it.
    pub async fn run(self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut renewed: Option<Instant> = None;
        let limit = (self.timing.renew_deadline / 2).min(Duration::from_secs(5));
        while !*stop.borrow_and_update() {
            let sent_at = Instant::now();
            let step = match tokio::time::timeout(limit, self.try_lead(Timestamp::now())).await {
                Ok(step) => step,
                Err(_) => Err(LeaderError::TimeOutLease { name: self.name.clone(), limit }),
            };
            match step {
                Ok(true) => {
                    let until = sent_at + self.timing.duration.saturating_sub(SKEW);
                    self.fence.grant(sent_at + self.timing.renew_deadline, until);
                    if renewed.is_none() {
                        tracing::info!(identity = %self.identity, lease = %self.name, "acquired the leader Lease");
                    }
                    renewed = Some(sent_at);
                    self.publish(&leading, true);
                }
                Ok(false) => {
                    if renewed.take().is_some() {
                        tracing::warn!(identity = %self.identity, lease = %self.name, "another replica holds the leader Lease");
                    }
                    self.fence.revoke();
                    self.publish(&leading, false);
                }
                Err(error) => {
                    tracing::warn!(error = %super::pipeline::error_chain(&error), "leader election step failed");
                    if renewed.is_some_and(|at| at.elapsed() >= self.timing.renew_deadline) {
                        tracing::warn!(identity = %self.identity, lease = %self.name, "the leader Lease was not renewed within the renew deadline; stepping down");
                        renewed = None;
                        self.fence.revoke();
                        self.publish(&leading, false);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(sent_at + RETRY_PERIOD) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        self.fence.revoke();
        if renewed.is_some() {
            match tokio::time::timeout(limit, self.release()).await {
                Ok(Ok(())) => {
                    tracing::info!(identity = %self.identity, lease = %self.name, "released the leader Lease")
                }
                Ok(Err(error)) => {
                    tracing::warn!(error = %super::pipeline::error_chain(&error), "releasing the leader Lease failed; it lapses on its own");
                }
                Err(_) => tracing::warn!("releasing the leader Lease timed out; it lapses on its own"),
            }
        }
        self.publish(&leading, false);
    }

    /// Takes or renews the Lease if it is ours or free; whether this replica holds it after.
    async fn try_lead(&self, now: Timestamp) -> Result<bool, LeaderError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaderError::GetLease { name: self.name.clone(), source })?;
        let write = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(self.claim(None, now)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let version = lease.metadata.resource_version.clone();
                let taken = {
                    let mut observed =
                        self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    may_take(&spec, version, &self.identity, &mut observed, Instant::now())
                };
                if !taken {
                    return Ok(false);
                }
                let lease = Lease { metadata: lease.metadata, spec: Some(self.claim(Some(&spec), now)) };
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match write {
            Ok(_) => Ok(true),
            // Another replica wrote the Lease first (or created it): it leads.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(LeaderError::WriteLease { name: self.name.clone(), source }),
        }
    }

    /// The spec that makes this replica the holder, renewed at `now`.
    fn claim(&self, current: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = current.is_some_and(|s| s.holder_identity.as_deref() == Some(self.identity.as_str()));
        let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.timing.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: if ours {
                current.and_then(|s| s.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || current.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up, so that a standby can lead at once.
    async fn release(&self) -> Result<(), LeaderError> {
        let Some(lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaderError::GetLease { name: self.name.clone(), source })?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        let lease = Lease { metadata: lease.metadata, spec: Some(spec) };
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|source| LeaderError::WriteLease { name: self.name.clone(), source })?;
        Ok(())
    }
}

/// Whether `identity` may write itself into a Lease with `spec` (at `resource_version`): it holds
/// it already, nobody does, or, as client-go decides, the Lease has not changed (holder, renew time
/// and resource version) for a whole lease duration of this replica's own observed time (`now`,
/// monotonic). No clock of another node is compared with ours: a holder whose clock runs ahead or
/// behind is judged only by whether it keeps writing. `observed` keeps what was last seen.
pub fn may_take(
    spec: &LeaseSpec,
    resource_version: Option<String>,
    identity: &str,
    observed: &mut Option<Observed>,
    now: Instant,
) -> bool {
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    let Some(holder) = holder else { return true };
    if holder == identity {
        return true;
    }
    let record = LeaseRecord {
        holder: holder.to_string(),
        renew_time: spec.renew_time.as_ref().map(|t| t.0),
        resource_version,
    };
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    match observed {
        Some(seen) if seen.record == record => now.duration_since(seen.since) >= duration,
        _ => {
            *observed = Some(Observed { record, since: now });
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn held_by(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(renewed))),
            ..LeaseSpec::default()
        }
    }

    fn rv(v: &str) -> Option<String> {
        Some(v.into())
    }

    #[test]
    fn a_lease_is_taken_when_ours_free_or_unchanged_for_a_lease_duration_of_our_own_time() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut seen = None;
        assert!(may_take(&LeaseSpec::default(), rv("1"), "a", &mut seen, at(0)));
        assert!(may_take(&held_by("a", "2026-12-01T00:00:19Z"), rv("1"), "a", &mut seen, at(0)));
        // An old renew time is not trusted: first seen now, so it waits a whole lease duration.
        let stale = held_by("b", "2020-01-01T00:00:00Z");
        assert!(!may_take(&stale, rv("7"), "a", &mut seen, at(0)));
        assert!(!may_take(&stale, rv("7"), "a", &mut seen, at(14)));
        assert!(may_take(&stale, rv("7"), "a", &mut seen, at(15)));
        let released = LeaseSpec { holder_identity: None, ..held_by("b", "2026-12-01T00:00:19Z") };
        assert!(may_take(&released, rv("8"), "a", &mut None, at(0)));
    }

    #[test]
    fn clocks_of_other_nodes_decide_nothing() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        // Left by a dead replica whose clock ran an hour ahead: taken after one lease duration.
        let mut seen = None;
        let ahead = held_by("dead", "2026-12-01T01:00:00Z");
        assert!(!may_take(&ahead, rv("3"), "a", &mut seen, at(0)));
        assert!(may_take(&ahead, rv("3"), "a", &mut seen, at(15)));
        // Renewed every second by a holder whose renew times look an hour old to us: never taken.
        let mut seen = None;
        for i in 0..60u64 {
            let renewed = held_by("b", &format!("2026-12-01T00:{:02}:{:02}Z", i / 60, i % 60));
            assert!(!may_take(&renewed, Some(format!("{}", 100 + i)), "a", &mut seen, at(i)), "second {i}");
        }
    }
}
