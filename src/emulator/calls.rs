//! Counts of the cloud calls the emulator received, by route template and by project, and a log of
//! the latest calls with when and from whom they arrived, so tests can assert exactly which calls a
//! client made and in what order. No I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Calls received since start or the last reset; faulted and rejected calls count too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallCounts {
    pub total: u64,
    /// DELETE calls.
    pub deletes: u64,
    /// Calls answered 429, by the rate limit or an injected fault (also in `total`).
    pub throttled: u64,
    /// Keyed `"<METHOD> <route template>"`, e.g.
    /// `"DELETE /v1/{project_id}/task-center/failure-jobs/batch"`.
    pub by_route: BTreeMap<String, u64>,
    /// Keyed by the project id in the path.
    pub by_project: BTreeMap<String, u64>,
    /// Project id, then `"<METHOD> <route template>"`.
    pub by_project_route: BTreeMap<String, BTreeMap<String, u64>>,
    /// The latest [`LOG_LIMIT`] calls, in the order they arrived.
    pub log: Vec<CallRecord>,
    /// Calls to a path (or method) no cloud route publishes, keyed by method. They reach no
    /// handler, so they are not in `total`; a test reads them to prove that nothing went astray.
    pub unmatched: BTreeMap<String, u64>,
}

/// Calls kept in [`CallCounts::log`]; older ones are dropped.
pub const LOG_LIMIT: usize = 10_000;

/// One call as it arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallRecord {
    /// Arrival, in microseconds since the Unix epoch (the host's clock, not the emulated one).
    pub at_micros: u64,
    pub method: String,
    /// The route template, e.g. `/v3/{project_id}/failed-tasks`.
    pub route: String,
    pub project: String,
    /// The caller's `User-Agent`; the controller puts its replica's name there.
    pub user_agent: String,
}

/// The key of a route in [`CallCounts::by_route`].
pub fn route_key(method: &str, template: &str) -> String {
    format!("{method} {template}")
}

impl CallCounts {
    pub fn record(&mut self, method: &str, template: &str, project: &str) {
        self.record_from(method, template, project, "", 0);
    }

    /// Counts a call and logs it with its caller and arrival time.
    pub fn record_from(
        &mut self,
        method: &str,
        template: &str,
        project: &str,
        user_agent: &str,
        at_micros: u64,
    ) {
        if self.log.len() >= LOG_LIMIT {
            self.log.remove(0);
        }
        self.log.push(CallRecord {
            at_micros,
            method: method.to_string(),
            route: template.to_string(),
            project: project.to_string(),
            user_agent: user_agent.to_string(),
        });
        let key = route_key(method, template);
        self.total += 1;
        if method == "DELETE" {
            self.deletes += 1;
        }
        *self.by_project.entry(project.to_string()).or_default() += 1;
        *self.by_project_route.entry(project.to_string()).or_default().entry(key.clone()).or_default() += 1;
        *self.by_route.entry(key).or_default() += 1;
    }

    /// Counts a call no cloud route matched.
    pub fn record_unmatched(&mut self, method: &str) {
        *self.unmatched.entry(method.to_string()).or_default() += 1;
    }

    /// Calls no cloud route matched, of one method.
    pub fn unmatched(&self, method: &str) -> u64 {
        self.unmatched.get(method).copied().unwrap_or(0)
    }

    /// Calls of one route, all projects together.
    pub fn route(&self, method: &str, template: &str) -> u64 {
        self.by_route.get(&route_key(method, template)).copied().unwrap_or(0)
    }

    /// Calls of one route in one project.
    pub fn project_route(&self, project: &str, method: &str, template: &str) -> u64 {
        self.by_project_route
            .get(project)
            .and_then(|routes| routes.get(&route_key(method, template)))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_every_dimension() {
        let mut calls = CallCounts::default();
        calls.record("GET", "/v3/{project_id}/failed-tasks", "p1");
        calls.record("DELETE", "/v3/{project_id}/failed-tasks", "p1");
        calls.record("DELETE", "/v3/{project_id}/failed-tasks", "p2");
        assert_eq!(calls.total, 3);
        assert_eq!(calls.deletes, 2);
        assert_eq!(calls.route("DELETE", "/v3/{project_id}/failed-tasks"), 2);
        assert_eq!(calls.route("GET", "/v3/{project_id}/failed-tasks"), 1);
        assert_eq!(calls.route("GET", "/v1/{project_id}/task-center/failure-jobs"), 0);
        assert_eq!(calls.by_project["p1"], 2);
        assert_eq!(calls.project_route("p2", "DELETE", "/v3/{project_id}/failed-tasks"), 1);
        assert_eq!(calls.project_route("p2", "GET", "/v3/{project_id}/failed-tasks"), 0);
        calls.record_from("GET", "/v3/{project_id}/failed-tasks", "p2", "taskreaper/1 (a)", 7);
        assert_eq!(calls.log.len(), 4);
        assert_eq!(calls.log[3].user_agent, "taskreaper/1 (a)");
        assert_eq!(calls.log[3].at_micros, 7);
        calls.record_unmatched("DELETE");
        assert_eq!((calls.unmatched("DELETE"), calls.unmatched("GET"), calls.total), (1, 0, 4));
        let json = serde_json::to_value(&calls).unwrap();
        assert_eq!(json["by_route"]["DELETE /v3/{project_id}/failed-tasks"], 2);
        assert_eq!(serde_json::from_value::<CallCounts>(json).unwrap(), calls);
    }
}
