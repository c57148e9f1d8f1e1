//! The Huawei Cloud side: credentials (also temporary ones from workload identity), SDK-HMAC-SHA256
//! signing, typed SDRS/KPS clients with error classification, retries and rate limiting, and an IAM
//! client for federation and project discovery.

pub mod credentials;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod federation;
pub mod http;
pub mod iam;
pub mod kps;
pub mod model;
pub mod observe;
mod paging;
pub mod ratelimit;
pub mod retry;
pub mod sdrs;
pub mod signing;

#[cfg(test)]
mod hostile_bytes_tests;

pub use endpoint::{Allowlist, Endpoint, EndpointError, EndpointPolicy, Service};
pub use error::{ApiError, CloudError, ErrorClass};
pub use http::{Clock, CloudHttp, DeleteOutcome, HttpConfig, SystemClock};
pub use kps::KpsClient;
pub use observe::CallObserver;
pub use paging::MAX_LIST_ITEMS;
pub use ratelimit::{AdaptiveRate, Outcome, RateControl, RateLimit, RateLimiters};
pub use retry::RetryPolicy;
pub use sdrs::SdrsClient;
