//! Where SDRS and KPS calls go: endpoints derived from the region or overridden per service, and the
//! host allowlist that keeps credentials from being sent anywhere else. Pure: no I/O.

use reqwest::Url;

pub use crate::api::Service;

/// The first label of a service's regional host name.
fn host_label(service: Service) -> &'static str {
    match service {
        Service::Sdrs => "sdrs",
        Service::Kps => "kms",
    }
}

/// The allowlist pattern used when none is configured.
pub const DEFAULT_ALLOWED_HOST: &str = "*.myhuaweicloud.com";

/// Why an endpoint or an allowlist pattern was refused. Never echoes a URL, which could hold user info.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("region {0:?} is not a region id such as cn-north-4")]
    DeriveFromRegion(String),
    #[error("endpoint override is not a valid absolute URL: {0}")]
    ParseOverride(String),
    #[error("endpoint override must use https, not {0}")]
    InsecureScheme(String),
    #[error("endpoint override must not carry a user name or password")]
    UserInfoInOverride,
    #[error("endpoint override must be a bare origin, without path, query or fragment")]
    PathInOverride,
    #[error("endpoint has no host")]
    MissingHost,
    #[error("endpoint host {0} is not on the endpoint allowlist")]
    NotAllowed(String),
    #[error("allowlist pattern {0:?} is neither a host name nor *.suffix")]
    ParsePattern(String),
}

/// One allowlist entry: an exact host, or every host under a domain (`*.example.com`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// Holds the suffix with its leading dot, e.g. `.myhuaweicloud.com`.
    Suffix(String),
}

impl HostPattern {
    fn parse(pattern: &str) -> Result<Self, EndpointError> {
        let p = pattern.trim().to_ascii_lowercase();
        let bad = || EndpointError::ParsePattern(pattern.to_string());
        let (suffix, body) = match p.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']');
        if body.is_empty() || body.starts_with('.') || body.ends_with('.') || !body.chars().all(valid_char) {
            return Err(bad());
        }
        Ok(if suffix { Self::Suffix(format!(".{body}")) } else { Self::Exact(body.to_string()) })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => host == h,
            Self::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// Hosts that may receive credentials. Matching is on the host name only (ports are ignored) and is
/// case-insensitive; `*.example.com` matches `a.example.com` and `a.b.example.com` but not
/// `example.com`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    patterns: Vec<HostPattern>,
}

impl Allowlist {
    /// Parses patterns such as `*.myhuaweicloud.com` or `127.0.0.1`. An empty list allows nothing.
    pub fn parse<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Self, EndpointError> {
        let patterns =
            patterns.into_iter().map(|p| HostPattern::parse(p.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `host` (a host name or IP literal, without port) may receive credentials.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.patterns.iter().any(|p| p.matches(&host))
    }
}

impl Default for Allowlist {
    /// Only `*.myhuaweicloud.com`.
    fn default() -> Self {
        Self { patterns: vec![HostPattern::Suffix(".myhuaweicloud.com".to_string())] }
    }
}

/// What endpoints a process accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    pub allowlist: Allowlist,
    /// Accept `http://` overrides. Only for tests and the local demo; production keeps it false.
    pub allow_http: bool,
}

impl EndpointPolicy {
    /// Checks an endpoint against this policy; done when resolving and again before every request.
    pub fn check(&self, endpoint: &Endpoint) -> Result<(), EndpointError> {
        match endpoint.base.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(EndpointError::InsecureScheme(other.to_string())),
        }
        if self.allowlist.allows(endpoint.host()) {
            Ok(())
        } else {
            Err(EndpointError::NotAllowed(endpoint.host().to_string()))
        }
    }
}

/// The base URL of one service, already checked against an [`EndpointPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    service: Service,
    base: Url,
    host: String,
}

impl Endpoint {
    /// The service this endpoint serves.
    pub fn service(&self) -> Service {
        self.service
    }

    /// The origin, e.g. `https://sdrs.cn-north-4.myhuaweicloud.com`, without a trailing slash.
    pub fn origin(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// The host name (or IP literal) without port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Host` header as sent: the host, plus `:port` when the port is not the scheme's default.
    pub fn authority(&self) -> String {
        match self.base.port() {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// The full URL for an already-encoded path (starting with `/`) and canonical query string.
    pub fn url_for(&self, path: &str, query: &str) -> String {
        if query.is_empty() {
            format!("{}{path}", self.origin())
        } else {
            format!("{}{path}?{query}", self.origin())
        }
    }
}

/// Whether `region` looks like a region id (`cn-north-4`, `ap-southeast-1`): lower-case letters and
/// digits in dash-separated groups, so it cannot change the shape of the derived host name.
fn is_region_id(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 63
        && region
            .split('-')
            .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// Resolves a service's endpoint: the override when given, otherwise derived from the region
/// (`https://sdrs.{region}.myhuaweicloud.com`, `https://kms.{region}.myhuaweicloud.com`); then checks
/// it against the policy.
pub fn resolve(
    service: Service,
    region: &str,
    override_url: Option<&str>,
    policy: &EndpointPolicy,
) -> Result<Endpoint, EndpointError> {
    let raw = match override_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => url.to_string(),
        None if is_region_id(region) => {
            format!("https://{}.{region}.myhuaweicloud.com", host_label(service))
        }
        None => return Err(EndpointError::DeriveFromRegion(region.to_string())),
    };
    let base = Url::parse(&raw).map_err(|e| EndpointError::ParseOverride(e.to_string()))?;
    if !matches!(base.scheme(), "https" | "http") {
        return Err(EndpointError::InsecureScheme(base.scheme().to_string()));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(EndpointError::UserInfoInOverride);
    }
    if base.path() != "/" || base.query().is_some() || base.fragment().is_some() {
        return Err(EndpointError::PathInOverride);
    }
    let host = base.host_str().filter(|h| !h.is_empty()).ok_or(EndpointError::MissingHost)?.to_string();
    let endpoint = Endpoint { service, base, host };
    policy.check(&endpoint)?;
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str], allow_http: bool) -> EndpointPolicy {
        EndpointPolicy { allowlist: Allowlist::parse(patterns).unwrap(), allow_http }
    }

    #[test]
    fn derives_from_region() {
        let p = EndpointPolicy::default();
        let sdrs = resolve(Service::Sdrs, "cn-north-4", None, &p).unwrap();
        assert_eq!(sdrs.origin(), "https://sdrs.cn-north-4.myhuaweicloud.com");
        assert_eq!(sdrs.authority(), "sdrs.cn-north-4.myhuaweicloud.com");
        assert_eq!(sdrs.service(), Service::Sdrs);
        let kps = resolve(Service::Kps, "ap-southeast-1", Some("  "), &p).unwrap();
        assert_eq!(kps.origin(), "https://kms.ap-southeast-1.myhuaweicloud.com");
        assert_eq!(
            kps.url_for("/v3/p/failed-tasks", "limit=1&offset=0"),
            "https://kms.ap-southeast-1.myhuaweicloud.com/v3/p/failed-tasks?limit=1&offset=0"
        );
        assert_eq!(
            kps.url_for("/v3/p/failed-tasks", ""),
            "https://kms.ap-southeast-1.myhuaweicloud.com/v3/p/failed-tasks"
        );
    }

    #[test]
    fn rejects_regions_that_would_reshape_the_host() {
        for region in
            ["", "evil.com/x", "cn-north-4.evil.com", "CN-north-4", "cn--north", "cn-north-4#", "a b"]
        {
            assert_eq!(
                resolve(Service::Sdrs, region, None, &EndpointPolicy::default()),
                Err(EndpointError::DeriveFromRegion(region.to_string())),
                "{region:?}"
            );
        }
    }

    #[test]
    fn overrides_must_be_https_unless_allowed() {
        let p = policy(&["127.0.0.1"], false);
        assert_eq!(
            resolve(Service::Sdrs, "cn-north-4", Some("http://127.0.0.1:8080"), &p),
            Err(EndpointError::InsecureScheme("http".into()))
        );
        let e = resolve(Service::Sdrs, "x", Some("http://127.0.0.1:8080"), &policy(&["127.0.0.1"], true))
            .unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8080");
        assert_eq!(e.origin(), "http://127.0.0.1:8080");
        assert_eq!(
            resolve(Service::Sdrs, "x", Some("ftp://127.0.0.1"), &policy(&["127.0.0.1"], true)),
            Err(EndpointError::InsecureScheme("ftp".into()))
        );
        let https = resolve(Service::Kps, "x", Some("https://127.0.0.1:443/"), &p).unwrap();
        assert_eq!(https.authority(), "127.0.0.1", "the default port is not part of Host");
    }

    #[test]
    fn overrides_must_be_bare_origins() {
        let p = policy(&["*.example.com"], false);
        for (url, err) in [
            ("https://user:pw@a.example.com", EndpointError::UserInfoInOverride),
            ("https://a.example.com/prefix", EndpointError::PathInOverride),
            ("https://a.example.com/?x=1", EndpointError::PathInOverride),
            ("https://a.example.com/#f", EndpointError::PathInOverride),
        ] {
            assert_eq!(resolve(Service::Sdrs, "x", Some(url), &p), Err(err), "{url}");
        }
        assert!(matches!(
            resolve(Service::Sdrs, "x", Some("not a url"), &p),
            Err(EndpointError::ParseOverride(_))
        ));
        let shown = resolve(Service::Sdrs, "x", Some("https://user:hunter2@a.example.com"), &p).unwrap_err();
        assert!(!shown.to_string().contains("hunter2"));
    }

    #[test]
    fn allowlist_matching() {
        let list = Allowlist::parse(["*.myhuaweicloud.com", "127.0.0.1", "Proxy.Internal"]).unwrap();
        assert!(list.allows("sdrs.cn-north-4.myhuaweicloud.com"));
        assert!(list.allows("a.b.c.MyHuaweiCloud.com"));
        assert!(!list.allows("myhuaweicloud.com"), "the suffix pattern needs a label before it");
        assert!(!list.allows("evilmyhuaweicloud.com"));
        assert!(!list.allows("myhuaweicloud.com.evil.net"));
        assert!(list.allows("127.0.0.1"));
        assert!(!list.allows("127.0.0.2"));
        assert!(list.allows("proxy.internal"));
        assert!(!list.allows("x.proxy.internal"), "an exact host does not cover subdomains");
        assert!(Allowlist::default().allows("kms.la-south-2.myhuaweicloud.com"));
        assert!(!Allowlist::default().allows("127.0.0.1"));
        assert!(!Allowlist::parse(Vec::<String>::new()).unwrap().allows("a.myhuaweicloud.com"));
    }

    #[test]
    fn allowlist_rejects_bad_patterns() {
        for bad in
            ["", "*", "*.", "*foo.com", "a.*.com", "https://a.com", "a.com/x", "user@a.com", ".a.com", "a b"]
        {
            assert_eq!(Allowlist::parse([bad]), Err(EndpointError::ParsePattern(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn endpoint_outside_the_allowlist_is_refused() {
        assert_eq!(
            resolve(Service::Sdrs, "x", Some("https://attacker.example"), &EndpointPolicy::default()),
            Err(EndpointError::NotAllowed("attacker.example".into()))
        );
        let ok = resolve(Service::Sdrs, "cn-north-4", None, &EndpointPolicy::default()).unwrap();
        assert_eq!(
            policy(&["127.0.0.1"], false).check(&ok),
            Err(EndpointError::NotAllowed(ok.host().into()))
        );
    }
}
