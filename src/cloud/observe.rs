//! What the HTTP core tells a listener (the controller's metrics) about each request: a small
//! trait, so that this layer depends on no metrics library. No I/O.

use std::time::Duration;

use crate::cloud::endpoint::Service;

/// Receives one report per HTTP request and per wait a throttling answer caused. Called on the
/// request path: implementations must be cheap and must not block.
pub trait CallObserver: Send + Sync {
    /// One request of `operation` ended after `elapsed` on the wire: answered with `status`, or
    /// not answered at all (`None`: connection, TLS, timeout or body read failure).
    fn request(&self, service: Service, operation: &'static str, status: Option<u16>, elapsed: Duration);
    /// A retry of `service` waited `waited` because the service throttled (429, its `Retry-After`
    /// or the backoff that stands in for it).
    fn throttle_wait(&self, service: Service, waited: Duration);
}

/// The class of an answer as metrics label it: `2xx` .. `5xx`, or `error` when there was none.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) | None => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classed_by_their_first_digit() {
        assert_eq!(status_class(Some(200)), "2xx");
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(302)), "3xx");
        assert_eq!(status_class(Some(429)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "error");
        assert_eq!(status_class(Some(99)), "error");
    }
}
