//! Temporary credentials from workload identity, cached per identity and refreshed before they
//! expire. The refresh rule is pure ([`RefreshPolicy::needs_refresh`], `now` passed in); the cache
//! calls IAM through [`IamClient`] and gets ID tokens from the caller (a projected token file, or a
//! token the controller requests for a ServiceAccount), so it does network I/O only through them.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::cloud::credentials::Secret;
use crate::cloud::iam::{IamClient, IamError, TemporaryCredentials};

/// When to get new temporary credentials.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefreshPolicy {
    /// Refresh when less than this remains (the SDK's 40 minutes).
    pub before_expiry: Duration,
    /// ...or, for credentials shorter than that, when less than this fraction of their lifetime
    /// remains, so that short-lived credentials are not fetched again before every use.
    pub fraction_left: f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self { before_expiry: Duration::from_secs(40 * 60), fraction_left: 0.5 }
    }
}

impl RefreshPolicy {
    /// Whether credentials issued at `issued_at` and expiring at `expires_at` must be refreshed at
    /// `now`: when less than `min(before_expiry, fraction_left × lifetime)` remains.
    pub fn needs_refresh(&self, issued_at: Timestamp, expires_at: Timestamp, now: Timestamp) -> bool {
        let lifetime = expires_at.duration_since(issued_at).as_secs_f64().max(0.0);
        let margin = self.before_expiry.as_secs_f64().min(lifetime * self.fraction_left.clamp(0.0, 1.0));
        let left = expires_at.duration_since(now).as_secs_f64();
        left < margin || left <= 0.0
    }
}

/// Why temporary credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FederationError<E: std::error::Error + 'static> {
    #[error("could not get an ID token")]
    IdToken(#[source] E),
    #[error("IAM refused or failed the federation")]
    Iam(#[source] IamError),
}

struct Cached {
    credentials: Arc<TemporaryCredentials>,
    issued_at: Timestamp,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Temporary credentials per identity `K` (e.g. namespace, ServiceAccount and identity provider).
/// Concurrent users of one identity wait for one exchange instead of each making their own.
pub struct FederationCache<K> {
    iam: IamClient,
    /// What is asked for as `duration_seconds`.
    duration: Duration,
    policy: RefreshPolicy,
    slots: Mutex<HashMap<K, Slot>>,
}

impl<K> std::fmt::Debug for FederationCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationCache")
            .field("iam", &self.iam.endpoint())
            .field("duration", &self.duration)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Where credentials came from on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// From the cache.
    Cached,
    /// From a new exchange.
    Exchanged,
    /// From the cache although due for a refresh, because the refresh failed and they are still valid.
    KeptAfterFailedRefresh,
}

impl<K: Hash + Eq + Clone> FederationCache<K> {
    pub fn new(iam: IamClient, duration: Duration, policy: RefreshPolicy) -> Self {
        Self { iam, duration, policy, slots: Mutex::new(HashMap::new()) }
    }

    pub fn iam(&self) -> &IamClient {
        &self.iam
    }

    fn slot(&self, key: &K) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(key.clone()).or_default().clone()
    }

    /// Credentials of `key` valid at `now`: the cached ones unless due for a refresh, otherwise a
    /// new exchange of the ID token `id_token` yields at IAM provider `idp_id`. When the refresh
    /// fails but the cached credentials have not expired yet, those are kept.
    pub async fn credentials<F, Fut, E>(
        &self,
        key: &K,
        idp_id: &str,
        id_token: F,
        now: Timestamp,
    ) -> Result<(Arc<TemporaryCredentials>, Freshness), FederationError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Secret, E>>,
        E: std::error::Error + 'static,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && !self.policy.needs_refresh(c.issued_at, c.credentials.expires_at, now)
        {
            return Ok((c.credentials.clone(), Freshness::Cached));
        }
        let fetched = match id_token().await {
            Ok(token) => self.iam.federate(idp_id, &token, self.duration).await.map_err(FederationError::Iam),
            Err(e) => Err(FederationError::IdToken(e)),
        };
        match fetched {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *cached = Some(Cached { credentials: fresh.clone(), issued_at: now });
                Ok((fresh, Freshness::Exchanged))
            }
            Err(e) => match cached.as_ref() {
                Some(c) if c.credentials.expires_at > now => {
                    tracing::warn!(error = %e, "refreshing temporary credentials failed; keeping the valid ones");
                    Ok((c.credentials.clone(), Freshness::KeptAfterFailedRefresh))
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets the credentials of `key`, e.g. after the cloud refused them.
    pub fn forget(&self, key: &K) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

/// `at` plus `secs` seconds, for tests and callers that compute expiries.
pub fn after(at: Timestamp, secs: i64) -> Timestamp {
    at.checked_add(SignedDuration::from_secs(secs)).unwrap_or(at)
}

/// Reads an ID token from a file (a projected ServiceAccount token, which the kubelet rotates: read
/// it on every exchange, never keep it).
pub async fn read_id_token_file(path: &std::path::Path) -> Result<Secret, std::io::Error> {
    let text = tokio::fs::read_to_string(path).await?;
    let token = text.trim();
    if token.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the ID token file is empty"));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        "2026-11-22T05:30:00Z".parse().unwrap()
    }

    #[test]
    fn long_credentials_refresh_forty_minutes_before_expiry() {
        let p = RefreshPolicy::default();
        let expires = after(t0(), 6 * 3600);
        assert!(!p.needs_refresh(t0(), expires, t0()));
        assert!(!p.needs_refresh(t0(), expires, after(expires, -40 * 60)));
        assert!(p.needs_refresh(t0(), expires, after(expires, -40 * 60 + 1)));
        assert!(p.needs_refresh(t0(), expires, expires));
        assert!(p.needs_refresh(t0(), expires, after(expires, 10)));
    }

    #[test]
    fn short_credentials_refresh_at_the_fraction_left() {
        let p = RefreshPolicy::default();
        let expires = after(t0(), 60);
        assert!(!p.needs_refresh(t0(), expires, after(t0(), 29)));
        assert!(!p.needs_refresh(t0(), expires, after(t0(), 30)));
        assert!(p.needs_refresh(t0(), expires, after(t0(), 31)));
        let eager = RefreshPolicy { fraction_left: 1.0, ..p };
        assert!(eager.needs_refresh(t0(), expires, after(t0(), 1)), "the SDK's rule for short credentials");
        let lazy = RefreshPolicy { fraction_left: 0.0, ..p };
        assert!(!lazy.needs_refresh(t0(), expires, after(t0(), 59)));
        assert!(lazy.needs_refresh(t0(), expires, expires), "expired is always refreshed");
    }

    #[tokio::test]
    async fn reads_a_token_file_fresh_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(read_id_token_file(&path).await.unwrap().expose(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(read_id_token_file(&path).await.unwrap().expose(), "second");
        std::fs::write(&path, " \n").unwrap();
        assert!(read_id_token_file(&path).await.is_err());
    }
}
