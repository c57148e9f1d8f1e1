//! The Huawei Cloud side: credentials, SDK-HMAC-SHA256 signing, and typed SDRS/KPS clients with
//! error classification, retries and rate limiting.

pub mod credentials;
pub mod model;
pub mod signing;
