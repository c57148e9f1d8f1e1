//! taskreaper: a Kubernetes controller that purges failed SDRS and KPS tasks from Huawei Cloud
//! projects on schedule and reports measured results in the policy's status.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod emulator;
pub mod observability;
pub mod purge;
