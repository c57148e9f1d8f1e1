//! Credentials for Huawei Cloud: AK/SK (optionally temporary, with a security token) or an IAM token.
//! No I/O. Secret material lives in [`Secret`], whose `Debug` and `Display` never show it.

use std::fmt;

/// A secret string. It prints as `<redacted>` and is compared only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing or sending; never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// SDK-HMAC-SHA256 signing with an access key pair; `security_token` for temporary credentials.
    AkSk { access_key_id: String, secret_access_key: Secret, security_token: Option<Secret> },
    /// An IAM token sent as `X-Auth-Token`.
    Token { auth_token: Secret },
}

/// Why a credentials map could not be read. Names keys only, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("credentials must hold either accessKeyId and secretAccessKey, or authToken")]
    Missing,
    #[error("credentials hold both an access key pair and authToken; keep one")]
    Ambiguous,
    #[error("credentials hold {present} without {missing}")]
    Incomplete { present: &'static str, missing: &'static str },
    #[error("credential key {0} is empty or not UTF-8")]
    Invalid(&'static str),
}

pub const ACCESS_KEY_ID: &str = "accessKeyId";
pub const SECRET_ACCESS_KEY: &str = "secretAccessKey";
pub const SECURITY_TOKEN: &str = "securityToken";
pub const AUTH_TOKEN: &str = "authToken";

impl Credentials {
    /// Reads credentials from key/value pairs, as a Kubernetes Secret's `data` or a YAML file hold them.
    /// `get` returns the raw bytes of a key when present.
    pub fn from_map<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Self, CredentialsError> {
        let read = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match get(key) {
                None => Ok(None),
                Some(bytes) => match std::str::from_utf8(bytes).map(str::trim) {
                    Ok(s) if !s.is_empty() => Ok(Some(s.to_string())),
                    _ => Err(CredentialsError::Invalid(key)),
                },
            }
        };
        let ak = read(ACCESS_KEY_ID)?;
        let sk = read(SECRET_ACCESS_KEY)?;
        let token = read(AUTH_TOKEN)?;
        let security_token = read(SECURITY_TOKEN)?;
        match (ak, sk, token) {
            (Some(_), Some(_), Some(_)) => Err(CredentialsError::Ambiguous),
            (Some(access_key_id), Some(sk), None) => Ok(Self::AkSk {
                access_key_id,
                secret_access_key: Secret::new(sk),
                security_token: security_token.map(Secret::new),
            }),
            (None, None, Some(t)) => Ok(Self::Token { auth_token: Secret::new(t) }),
            (Some(_), None, _) => {
                Err(CredentialsError::Incomplete { present: ACCESS_KEY_ID, missing: SECRET_ACCESS_KEY })
            }
            (None, Some(_), _) => {
                Err(CredentialsError::Incomplete { present: SECRET_ACCESS_KEY, missing: ACCESS_KEY_ID })
            }
            (None, None, None) => Err(CredentialsError::Missing),
        }
    }

    /// A label that identifies the credentials without revealing them: the access key id (public by
    /// design), or a short hash of the token. Used to key rate limiters.
    pub fn identity(&self) -> String {
        match self {
            Self::AkSk { access_key_id, .. } => access_key_id.clone(),
            Self::Token { auth_token } => {
                format!("token-{}", &crate::cloud::signing::hex_sha256(auth_token.expose().as_bytes())[..12])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Credentials, CredentialsError> {
        let map: BTreeMap<String, Vec<u8>> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        Credentials::from_map(|k| map.get(k).map(Vec::as_slice))
    }

    #[test]
    fn reads_each_form() {
        let c = parse(&[(ACCESS_KEY_ID, "AK"), (SECRET_ACCESS_KEY, "SK\n"), (SECURITY_TOKEN, "ST")]).unwrap();
        assert_eq!(
            c,
            Credentials::AkSk {
                access_key_id: "AK".into(),
                secret_access_key: Secret::new("SK"),
                security_token: Some(Secret::new("ST"))
            }
        );
        assert_eq!(
            parse(&[(AUTH_TOKEN, "tok")]).unwrap(),
            Credentials::Token { auth_token: Secret::new("tok") }
        );
    }

    #[test]
    fn rejects_incomplete_or_ambiguous() {
        assert_eq!(parse(&[]), Err(CredentialsError::Missing));
        assert_eq!(
            parse(&[(ACCESS_KEY_ID, "AK")]),
            Err(CredentialsError::Incomplete { present: ACCESS_KEY_ID, missing: SECRET_ACCESS_KEY })
        );
        assert_eq!(
            parse(&[(ACCESS_KEY_ID, "AK"), (SECRET_ACCESS_KEY, "SK"), (AUTH_TOKEN, "t")]),
            Err(CredentialsError::Ambiguous)
        );
        assert_eq!(parse(&[(AUTH_TOKEN, "  ")]), Err(CredentialsError::Invalid(AUTH_TOKEN)));
    }

    #[test]
    fn never_prints_secrets() {
        let c = parse(&[
            (ACCESS_KEY_ID, "AK"),
            (SECRET_ACCESS_KEY, "topsecret"),
            (SECURITY_TOKEN, "tokensecret"),
        ])
        .unwrap();
        let shown = format!("{c:?} {}", Secret::new("topsecret"));
        assert!(!shown.contains("topsecret") && !shown.contains("tokensecret"), "{shown}");
        assert!(!c.identity().contains("topsecret"));
        let t = parse(&[(AUTH_TOKEN, "tokensecret")]).unwrap();
        assert!(!format!("{t:?} {}", t.identity()).contains("tokensecret"));
    }
}
