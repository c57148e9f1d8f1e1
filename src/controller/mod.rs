//! The controller: kube-runtime wiring, reconcile, status, events and schedule.

pub mod schedule;
pub mod status;
