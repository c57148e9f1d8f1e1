//! The Huawei Cloud side: credentials, SDK-HMAC-SHA256 signing, and typed SDRS/KPS clients with
//! error classification, retries and rate limiting.

pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod http;
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
