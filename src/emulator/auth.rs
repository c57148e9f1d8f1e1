//! Authentication of cloud calls as the Huawei Cloud API gateway does it: an SDK-HMAC-SHA256
//! signature checked against the configured access keys or against temporary keys IAM issued (which
//! also need their `X-Security-Token`, signed, and expire), or an IAM token in `X-Auth-Token`. Pure:
//! the request, the temporary keys and the clock are passed in.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::cloud::credentials::Secret;
use crate::cloud::signing::{self, Authorization, DATE_HEADER, SigningError};

pub const AUTH_TOKEN_HEADER: &str = "X-Auth-Token";
pub const SECURITY_TOKEN_HEADER: &str = "X-Security-Token";
pub const PROJECT_ID_HEADER: &str = "X-Project-Id";

/// What the gateway knows about callers.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Secret key of each access key id.
    pub access_keys: BTreeMap<String, Secret>,
    /// IAM tokens accepted in `X-Auth-Token`.
    pub auth_tokens: Vec<Secret>,
    /// How far `X-Sdk-Date` may be from the server clock, either way.
    pub max_clock_skew: Duration,
}

/// A temporary access key as IAM issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemporaryKey {
    pub secret: Secret,
    pub security_token: Secret,
    pub expires_at: Timestamp,
}

/// Who made an accepted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    AccessKey(String),
    /// A temporary access key with its security token.
    TemporaryKey(String),
    Token,
}

/// Why a call was not authenticated. Never carries a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the request carries neither an Authorization header nor X-Auth-Token")]
    MissingCredentials,
    #[error("the X-Auth-Token is not a valid IAM token")]
    InvalidToken,
    #[error("the Authorization header is malformed")]
    MalformedAuthorization(#[source] SigningError),
    #[error("host is not among the signed headers")]
    HostNotSigned,
    #[error("X-Security-Token is present but not among the signed headers")]
    SecurityTokenNotSigned,
    #[error("X-Sdk-Date is missing")]
    MissingDate,
    #[error("X-Sdk-Date is not in the form YYYYMMDDTHHMMSSZ")]
    BadDate(#[source] SigningError),
    #[error("X-Sdk-Date {date} is more than {max_skew_secs} seconds away from the server time {now}")]
    DateSkewed { date: String, now: Timestamp, max_skew_secs: u64 },
    #[error("access key {0} does not exist")]
    UnknownAccessKey(String),
    #[error("access key {0} is temporary and the request carries no X-Security-Token")]
    MissingSecurityToken(String),
    #[error("the X-Security-Token does not belong to access key {0}")]
    WrongSecurityToken(String),
    #[error("the temporary access key {access_key} expired at {expired_at}")]
    TemporaryKeyExpired { access_key: String, expired_at: Timestamp },
    #[error("the signature does not match the request")]
    SignatureMismatch,
}

impl AuthError {
    /// The message for the response body, including the cause when there is one.
    pub fn detail(&self) -> String {
        match self {
            Self::MalformedAuthorization(cause) | Self::BadDate(cause) => format!("{self}: {cause}"),
            _ => self.to_string(),
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Checks one request against permanent keys and tokens only. `req.headers` must include `host` as
/// received.
pub fn authenticate(
    req: &signing::Request<'_>,
    settings: &AuthSettings,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    authenticate_with(req, settings, |_| None, now)
}

/// Checks one request; `temporary` finds a temporary key IAM issued by its access key id.
pub fn authenticate_with(
    req: &signing::Request<'_>,
    settings: &AuthSettings,
    temporary: impl Fn(&str) -> Option<TemporaryKey>,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    if let Some(token) = header(req.headers, AUTH_TOKEN_HEADER) {
        let token = token.trim();
        return if settings.auth_tokens.iter().any(|t| constant_time_eq(t.expose(), token)) {
            Ok(Principal::Token)
        } else {
            Err(AuthError::InvalidToken)
        };
    }
    let value = header(req.headers, "authorization").ok_or(AuthError::MissingCredentials)?;
    let auth = Authorization::parse(value.trim()).map_err(AuthError::MalformedAuthorization)?;
    let signed = |name: &str| auth.signed_headers.iter().any(|h| h.eq_ignore_ascii_case(name));
    if !signed("host") {
        return Err(AuthError::HostNotSigned);
    }
    if header(req.headers, SECURITY_TOKEN_HEADER).is_some() && !signed(SECURITY_TOKEN_HEADER) {
        return Err(AuthError::SecurityTokenNotSigned);
    }
    let sdk_date = header(req.headers, DATE_HEADER).map(str::trim).ok_or(AuthError::MissingDate)?;
    let date = signing::parse_sdk_date(sdk_date).map_err(AuthError::BadDate)?;
    if now.duration_since(date).unsigned_abs() > settings.max_clock_skew {
        return Err(AuthError::DateSkewed {
            date: sdk_date.to_string(),
            now,
            max_skew_secs: settings.max_clock_skew.as_secs(),
        });
    }
    let (secret, principal) = match settings.access_keys.get(&auth.access_key) {
        Some(secret) => (secret.clone(), Principal::AccessKey(auth.access_key.clone())),
        None => {
            let key = temporary(&auth.access_key)
                .ok_or_else(|| AuthError::UnknownAccessKey(auth.access_key.clone()))?;
            let token = header(req.headers, SECURITY_TOKEN_HEADER)
                .ok_or_else(|| AuthError::MissingSecurityToken(auth.access_key.clone()))?;
            if !constant_time_eq(key.security_token.expose(), token.trim()) {
                return Err(AuthError::WrongSecurityToken(auth.access_key.clone()));
            }
            if key.expires_at <= now {
                return Err(AuthError::TemporaryKeyExpired {
                    access_key: auth.access_key.clone(),
                    expired_at: key.expires_at,
                });
            }
            (key.secret, Principal::TemporaryKey(auth.access_key.clone()))
        }
    };
    if signing::verify(req, &auth, secret.expose().as_bytes(), sdk_date) {
        Ok(principal)
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

/// Compares two strings without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cloud::signing::vectors::{Vector, vectors};

    fn headers_of(v: &Vector) -> Vec<(String, String)> {
        let mut headers = crate::cloud::signing::vectors::headers_of(v);
        headers.push(("Authorization".into(), v.authorization.clone()));
        headers
    }

    fn settings(ak: &str, sk: &str) -> AuthSettings {
        AuthSettings {
            access_keys: BTreeMap::from([(ak.to_string(), Secret::new(sk))]),
            auth_tokens: vec![Secret::new("iam-token-1")],
            max_clock_skew: Duration::from_secs(15 * 60),
        }
    }

    fn signed_at() -> Timestamp {
        "2026-11-22T05:30:00Z".parse().unwrap()
    }

    fn request<'a>(v: &'a Vector, headers: &'a [(String, String)]) -> signing::Request<'a> {
        signing::Request { method: &v.method, path: &v.path, query: &v.query, headers, body: b"" }
    }

    #[test]
    fn accepts_every_sdk_vector_at_its_date() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 5);
        for v in &vectors {
            let headers = headers_of(v);
            let got = authenticate(&request(v, &headers), &settings(&v.ak, &v.sk), signed_at());
            assert_eq!(got, Ok(Principal::AccessKey(v.ak.clone())), "{} {}", v.method, v.path);
            let within = signed_at().checked_sub(jiff::SignedDuration::from_mins(15)).unwrap();
            assert!(authenticate(&request(v, &headers), &settings(&v.ak, &v.sk), within).is_ok());
        }
    }

    #[test]
    fn rejects_a_date_sixteen_minutes_off_either_way() {
        for v in vectors() {
            let headers = headers_of(&v);
            for offset in [16, -16] {
                let now = signed_at().checked_add(jiff::SignedDuration::from_mins(offset)).unwrap();
                let got = authenticate(&request(&v, &headers), &settings(&v.ak, &v.sk), now);
                assert!(matches!(got, Err(AuthError::DateSkewed { max_skew_secs: 900, .. })), "{got:?}");
            }
        }
    }

    #[test]
    fn rejects_tampering() {
        for v in vectors() {
            let headers = headers_of(&v);
            let s = settings(&v.ak, &v.sk);
            let base = request(&v, &headers);
            let check = |req: signing::Request<'_>| authenticate(&req, &s, signed_at());
            assert_eq!(
                check(signing::Request { method: "PATCH", ..base }),
                Err(AuthError::SignatureMismatch)
            );
            let path = format!("{}x", v.path);
            assert_eq!(check(signing::Request { path: &path, ..base }), Err(AuthError::SignatureMismatch));
            let query = [v.query.clone(), vec![("limit".into(), "1".into())]].concat();
            assert_eq!(check(signing::Request { query: &query, ..base }), Err(AuthError::SignatureMismatch));
            assert_eq!(check(signing::Request { body: b"{}", ..base }), Err(AuthError::SignatureMismatch));
            let other_host: Vec<(String, String)> = headers
                .iter()
                .map(|(k, val)| {
                    if k.eq_ignore_ascii_case("host") {
                        (k.clone(), "evil.example".into())
                    } else {
                        (k.clone(), val.clone())
                    }
                })
                .collect();
            assert_eq!(
                check(signing::Request { headers: &other_host, ..base }),
                Err(AuthError::SignatureMismatch)
            );
            let other_date: Vec<(String, String)> = headers
                .iter()
                .map(|(k, val)| {
                    if k == DATE_HEADER {
                        (k.clone(), "20261122T053100Z".into())
                    } else {
                        (k.clone(), val.clone())
                    }
                })
                .collect();
            assert_eq!(
                check(signing::Request { headers: &other_date, ..base }),
                Err(AuthError::SignatureMismatch)
            );
            assert_eq!(
                authenticate(&base, &settings(&v.ak, "another-secret"), signed_at()),
                Err(AuthError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn rejects_an_unknown_access_key() {
        let v = &vectors()[0];
        let headers = headers_of(v);
        assert_eq!(
            authenticate(&request(v, &headers), &settings("SOMEONEELSE", &v.sk), signed_at()),
            Err(AuthError::UnknownAccessKey(v.ak.clone()))
        );
    }

    #[test]
    fn rejects_missing_or_bad_pieces() {
        let v = &vectors()[0];
        let s = settings(&v.ak, &v.sk);
        let without = |name: &str| -> Vec<(String, String)> {
            headers_of(v).into_iter().filter(|(k, _)| !k.eq_ignore_ascii_case(name)).collect()
        };
        let h = without("authorization");
        assert_eq!(authenticate(&request(v, &h), &s, signed_at()), Err(AuthError::MissingCredentials));
        let h = without(DATE_HEADER);
        assert_eq!(authenticate(&request(v, &h), &s, signed_at()), Err(AuthError::MissingDate));
        let mut h = without(DATE_HEADER);
        h.push((DATE_HEADER.into(), "2026-11-22T05:30:00Z".into()));
        assert!(matches!(authenticate(&request(v, &h), &s, signed_at()), Err(AuthError::BadDate(_))));
        let mut h = without("authorization");
        h.push(("Authorization".into(), "AWS4-HMAC-SHA256 Credential=x".into()));
        let got = authenticate(&request(v, &h), &s, signed_at());
        assert_eq!(got, Err(AuthError::MalformedAuthorization(SigningError::UnknownAlgorithm)));
        assert!(got.unwrap_err().detail().contains("does not start with SDK-HMAC-SHA256"));
        let mut h = without("authorization");
        h.push(("Authorization".into(), v.authorization.replace("content-type;host;", "content-type;")));
        assert_eq!(authenticate(&request(v, &h), &s, signed_at()), Err(AuthError::HostNotSigned));
        let mut h = headers_of(v);
        h.push((SECURITY_TOKEN_HEADER.into(), "temporary".into()));
        assert_eq!(authenticate(&request(v, &h), &s, signed_at()), Err(AuthError::SecurityTokenNotSigned));
    }

    #[test]
    fn signs_and_accepts_a_security_token() {
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), "127.0.0.1:1".into()),
            (DATE_HEADER.into(), "20261122T053000Z".into()),
            (SECURITY_TOKEN_HEADER.into(), "temporary".into()),
        ];
        let req = signing::Request {
            method: "GET",
            path: "/v3/p/failed-tasks",
            query: &[],
            headers: &headers,
            body: b"",
        };
        let auth = signing::authorize(&req, "AK", b"SK", "20261122T053000Z");
        headers.push(("Authorization".into(), auth.header_value()));
        let req = signing::Request {
            method: "GET",
            path: "/v3/p/failed-tasks",
            query: &[],
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            authenticate(&req, &settings("AK", "SK"), signed_at()),
            Ok(Principal::AccessKey("AK".into()))
        );
    }

    #[test]
    fn temporary_keys_need_their_signed_token_and_expire() {
        let temp = TemporaryKey {
            secret: Secret::new("TEMPSK"),
            security_token: Secret::new("sts-token"),
            expires_at: signed_at().checked_add(jiff::SignedDuration::from_secs(60)).unwrap(),
        };
        let lookup = |ak: &str| (ak == "TEMPAK").then(|| temp.clone());
        let check = |token: Option<&str>, now: Timestamp| {
            let mut headers: Vec<(String, String)> =
                vec![("host".into(), "127.0.0.1:1".into()), (DATE_HEADER.into(), "20261122T053000Z".into())];
            if let Some(token) = token {
                headers.push((SECURITY_TOKEN_HEADER.into(), token.into()));
            }
            fn request(headers: &[(String, String)]) -> signing::Request<'_> {
                signing::Request { method: "GET", path: "/v3/p/failed-tasks", query: &[], headers, body: b"" }
            }
            let auth = signing::authorize(&request(&headers), "TEMPAK", b"TEMPSK", "20261122T053000Z");
            headers.push(("Authorization".into(), auth.header_value()));
            authenticate_with(&request(&headers), &settings("AK", "SK"), lookup, now)
        };
        assert_eq!(check(Some("sts-token"), signed_at()), Ok(Principal::TemporaryKey("TEMPAK".into())));
        assert_eq!(check(None, signed_at()), Err(AuthError::MissingSecurityToken("TEMPAK".into())));
        assert_eq!(check(Some("other"), signed_at()), Err(AuthError::WrongSecurityToken("TEMPAK".into())));
        let later = signed_at().checked_add(jiff::SignedDuration::from_secs(60)).unwrap();
        assert_eq!(
            check(Some("sts-token"), later),
            Err(AuthError::TemporaryKeyExpired { access_key: "TEMPAK".into(), expired_at: temp.expires_at })
        );
        let shown = format!("{:?}", check(Some("other"), signed_at()));
        assert!(!shown.contains("sts-token") && !shown.contains("TEMPSK"), "{shown}");
    }

    /// Signs a POST with `content_sha256` as `X-Sdk-Content-Sha256` over `signed_body`, then checks it
    /// as received with `sent_body`.
    fn check_content_sha256(
        content_sha256: &str,
        signed_body: &[u8],
        sent_body: &[u8],
    ) -> Result<Principal, AuthError> {
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), "127.0.0.1:1".into()),
            (DATE_HEADER.into(), "20261122T053000Z".into()),
            (signing::CONTENT_SHA256_HEADER.into(), content_sha256.into()),
        ];
        fn request<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> signing::Request<'a> {
            signing::Request { method: "POST", path: "/v3/p/failed-tasks", query: &[], headers, body }
        }
        let auth = signing::authorize(&request(&headers, signed_body), "AK", b"SK", "20261122T053000Z");
        headers.push(("Authorization".into(), auth.header_value()));
        authenticate(&request(&headers, sent_body), &settings("AK", "SK"), signed_at())
    }

    #[test]
    fn content_sha256_stands_for_a_body_only() {
        let accepted = Ok(Principal::AccessKey("AK".into()));
        assert_eq!(check_content_sha256("UNSIGNED-PAYLOAD", b"{}", b"{}"), accepted);
        assert_eq!(
            check_content_sha256(" UNSIGNED-PAYLOAD ", b"{}", b"{\"other\":1}"),
            accepted,
            "body not signed"
        );
        assert_eq!(check_content_sha256("UNSIGNED-PAYLOAD", b"", b""), accepted);
        assert_eq!(
            check_content_sha256("UNSIGNED-PAYLOAD", b"", b"{}"),
            Err(AuthError::SignatureMismatch),
            "without a body the empty hash was signed, not the header"
        );
        assert_eq!(check_content_sha256(" ", b"{}", b"{}"), accepted);
        assert_eq!(
            check_content_sha256(" ", b"{}", b"{\"other\":1}"),
            Err(AuthError::SignatureMismatch),
            "a blank value leaves the body signed"
        );
    }

    #[test]
    fn accepts_configured_tokens_only() {
        let s = settings("AK", "SK");
        let with_token = |t: &str| vec![(AUTH_TOKEN_HEADER.to_string(), t.to_string())];
        let h = with_token("iam-token-1");
        let req = signing::Request {
            method: "DELETE",
            path: "/v3/p/failed-tasks",
            query: &[],
            headers: &h,
            body: b"",
        };
        assert_eq!(authenticate(&req, &s, signed_at()), Ok(Principal::Token));
        let h = with_token("iam-token-2");
        let req = signing::Request { headers: &h, ..req };
        assert_eq!(authenticate(&req, &s, signed_at()), Err(AuthError::InvalidToken));
        assert!(!AuthError::InvalidToken.detail().contains("iam-token-2"));
    }
}
