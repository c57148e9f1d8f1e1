//! Helpers shared by the integration tests. Each test file that needs them
//! declares `mod common;`; not every file uses every helper.
#![allow(dead_code)]

pub mod binary;
pub mod control_plane;
pub mod e2e;
pub mod iam;
pub mod recorder;
