//! Verification of OIDC ID tokens as IAM does it for an identity provider: an RS256 or ES256
//! signature (what Kubernetes signs service-account tokens with, for RSA and P-256 keys) by a key of
//! the provider's JWKS, then issuer, audience and validity window against the clock passed
//! in. Pure; no I/O.

use std::collections::HashSet;

use jiff::Timestamp;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How far `nbf` and `iat` may be in the future, for clocks that differ a little.
pub const NOT_BEFORE_LEEWAY_SECS: i64 = 60;

/// Signature algorithms accepted; a key's type must fit the algorithm (jsonwebtoken checks it).
pub const ACCEPTED_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// An identity provider of the account: whose ID tokens it trusts.
#[derive(Clone, Debug)]
pub struct OidcProvider {
    /// The `iss` every token must carry, e.g. a Kubernetes service-account issuer.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// The issuer's public keys.
    pub jwks: JwkSet,
}

/// What IAM keeps of an accepted ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The `sub` claim, e.g. `system:serviceaccount:NAMESPACE:NAME`.
    pub sub: String,
    /// When the ID token expires.
    pub expires_at: Timestamp,
}

/// Why an ID token was refused. Never carries the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("the id_token is not a JWT")]
    Malformed,
    #[error("the id_token is signed with {0}; only RS256 and ES256 are accepted")]
    UnsupportedAlgorithm(String),
    #[error("no key of the identity provider's JWKS matches the id_token (kid {0})")]
    UnknownKey(String),
    #[error("the id_token signature does not verify with the identity provider's keys")]
    BadSignature,
    #[error("the id_token lacks the {0} claim or has it in the wrong form")]
    MissingClaim(&'static str),
    #[error("the id_token issuer {got} is not the identity provider's issuer {expected}")]
    WrongIssuer { got: String, expected: String },
    #[error("the id_token audience {got:?} names none of {expected:?}")]
    WrongAudience { got: Vec<String>, expected: Vec<String> },
    #[error("the id_token expired at {expired_at}")]
    Expired { expired_at: Timestamp },
    #[error("the id_token is not valid before {not_before}")]
    NotYetValid { not_before: Timestamp },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

fn at(secs: i64, claim: &'static str) -> Result<Timestamp, IdTokenError> {
    Timestamp::from_second(secs).map_err(|_| IdTokenError::MissingClaim(claim))
}

/// Checks `token` against `provider` at `now` and returns who it names.
pub fn verify(token: &str, provider: &OidcProvider, now: Timestamp) -> Result<Subject, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
        return Err(IdTokenError::UnsupportedAlgorithm(format!("{:?}", header.alg)));
    }
    let candidates: Vec<_> = match &header.kid {
        Some(kid) => provider.jwks.find(kid).into_iter().collect(),
        None => provider.jwks.keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(IdTokenError::UnknownKey(header.kid.unwrap_or_else(|| "none".into())));
    }
    // Only the signature is checked here; the claims are checked below against the emulator's
    // clock (which tests fix or shift) with errors that say what is wrong.
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = candidates
        .into_iter()
        .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
        .find_map(|key| jsonwebtoken::decode::<Claims>(token, &key, &validation).ok())
        .ok_or(IdTokenError::BadSignature)?
        .claims;

    let iss = claims.iss.ok_or(IdTokenError::MissingClaim("iss"))?;
    if iss != provider.issuer {
        return Err(IdTokenError::WrongIssuer { got: iss, expected: provider.issuer.clone() });
    }
    let aud = match claims.aud.ok_or(IdTokenError::MissingClaim("aud"))? {
        Audience::One(a) => vec![a],
        Audience::Many(a) => a,
    };
    if !aud.iter().any(|a| provider.audiences.contains(a)) {
        return Err(IdTokenError::WrongAudience { got: aud, expected: provider.audiences.clone() });
    }
    let expires_at = at(claims.exp.ok_or(IdTokenError::MissingClaim("exp"))?, "exp")?;
    if expires_at <= now {
        return Err(IdTokenError::Expired { expired_at: expires_at });
    }
    for (claim, value) in [("nbf", claims.nbf), ("iat", claims.iat)] {
        if let Some(secs) = value {
            let not_before = at(secs, claim)?;
            if not_before.as_second() > now.as_second() + NOT_BEFORE_LEEWAY_SECS {
                return Err(IdTokenError::NotYetValid { not_before });
            }
        }
    }
    let sub = claims.sub.filter(|s| !s.is_empty()).ok_or(IdTokenError::MissingClaim("sub"))?;
    Ok(Subject { sub, expires_at })
}
