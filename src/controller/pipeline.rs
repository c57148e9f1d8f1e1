//! The steps before a run that decide whether it can happen at all: validate the spec, read the
//! credentials, check the endpoints. No Kubernetes I/O, so the `purge` command shares them.

use super::status::Verdict;
use crate::api::{FailedTaskCleanupPolicySpec, Reason, ValidatedSpec};
use crate::cloud::CloudHttp;
use crate::cloud::credentials::Credentials;
use crate::purge::{CloudApi, PurgePolicy};
use std::collections::BTreeMap;

/// Why a policy cannot run until the user changes something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub reason: Reason,
    pub message: String,
}

impl Blocked {
    pub fn verdict(&self) -> Verdict<'static> {
        Verdict::Blocked { reason: self.reason, message: self.message.clone() }
    }
}

/// A policy ready to run.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub valid: ValidatedSpec,
    pub policy: PurgePolicy,
}

/// Validates the spec and builds the run's view of it.
pub fn prepare(spec: &FailedTaskCleanupPolicySpec) -> Result<Prepared, Blocked> {
    let valid = crate::api::validate(spec).map_err(|errors| Blocked {
        reason: Reason::InvalidSpec,
        message: errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    })?;
    let policy = PurgePolicy::new(spec, &valid)
        .map_err(|e| Blocked { reason: Reason::InvalidSpec, message: e.to_string() })?;
    Ok(Prepared { valid, policy })
}

/// Reads credentials from a Secret's data; `None` when the Secret does not exist.
pub fn credentials(secret: &str, data: Option<&BTreeMap<String, Vec<u8>>>) -> Result<Credentials, Blocked> {
    let data = data.ok_or_else(|| Blocked {
        reason: Reason::CredentialsNotFound,
        message: format!("Secret {secret:?} not found in the policy's namespace; create it with accessKeyId and secretAccessKey, or authToken"),
    })?;
    Credentials::from_map(|key| data.get(key).map(Vec::as_slice)).map_err(|e| Blocked {
        reason: Reason::CredentialsInvalid,
        message: format!("Secret {secret:?}: {e}"),
    })
}

/// The cloud as the policy reaches it, once every endpoint it needs passed the allowlist.
pub fn cloud_api(
    spec: &FailedTaskCleanupPolicySpec,
    policy: &PurgePolicy,
    credentials: Credentials,
    http: &CloudHttp,
) -> Result<CloudApi, Blocked> {
    let api = CloudApi::new(http.clone(), credentials, spec.endpoints.clone());
    api.check_endpoints(policy).map_err(|e| Blocked {
        reason: Reason::EndpointNotAllowed,
        message: format!(
            "{}; allow it with the controller's --endpoint-allowlist or remove the override",
            error_chain(&e)
        ),
    })?;
    Ok(api)
}

/// An error and its sources, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FailedTaskCleanupPolicy;

    fn example() -> FailedTaskCleanupPolicySpec {
        serde_yaml::from_str::<FailedTaskCleanupPolicy>(crate::api::EXAMPLE_POLICY).unwrap().spec
    }

    #[test]
    fn an_invalid_spec_blocks_with_every_problem() {
        let mut spec = example();
        spec.projects[0].id = "nothex".into();
        spec.schedule.interval = Some("10s".into());
        spec.schedule.cron = None;
        spec.schedule.time_zone = None;
        let blocked = prepare(&spec).unwrap_err();
        assert_eq!(blocked.reason, Reason::InvalidSpec);
        assert!(blocked.message.contains("32 lowercase hexadecimal"), "{}", blocked.message);
        assert!(blocked.message.contains("at least 1m"), "{}", blocked.message);
    }

    #[test]
    fn credentials_are_found_or_explained() {
        assert_eq!(credentials("creds", None).unwrap_err().reason, Reason::CredentialsNotFound);
        let empty = BTreeMap::new();
        let blocked = credentials("creds", Some(&empty)).unwrap_err();
        assert_eq!(blocked.reason, Reason::CredentialsInvalid);
        assert!(blocked.message.contains("accessKeyId"), "{}", blocked.message);
        let data = BTreeMap::from([("authToken".to_string(), b"t".to_vec())]);
        assert!(credentials("creds", Some(&data)).is_ok());
    }
}
