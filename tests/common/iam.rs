//! The emulator's IAM as the federation tests set it up: one OIDC identity provider trusting a
//! local issuer, and projects named after their regions.

use std::collections::BTreeMap;
use std::time::Duration;

use taskreaper::emulator::{IamSettings, LocalIssuer, OidcProvider};

/// The issuer a Kubernetes cluster's ServiceAccount tokens name.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience IAM accepts.
pub const AUDIENCE: &str = "iam.myhuaweicloud.com";
/// The identity provider id registered for that issuer.
pub const IDP: &str = "k8s-cluster";

/// IAM trusting `issuer` as [`IDP`] (for [`AUDIENCE`]), naming `north` `cn-north-4` and `east`
/// `cn-east-3`, issuing temporary keys of at most `max_duration`.
pub fn federated_iam(issuer: &LocalIssuer, north: &str, east: &str, max_duration: Duration) -> IamSettings {
    IamSettings {
        providers: BTreeMap::from([(
            IDP.to_string(),
            OidcProvider {
                issuer: ISSUER.into(),
                audiences: vec![AUDIENCE.into()],
                jwks: issuer.jwks().expect("a JWKS"),
            },
        )]),
        projects: BTreeMap::from([
            (north.to_string(), "cn-north-4".to_string()),
            (east.to_string(), "cn-east-3".to_string()),
        ]),
        max_duration,
        ..IamSettings::default()
    }
}
