//! A throw-away OIDC issuer for tests and demos, as [`tls`](super::tls) is a throw-away CA: an RSA
//! key made at start, its JWKS for the emulator's identity provider, and RS256 ID tokens signed with
//! it (with aws-lc-rs, so the emulator's verifier checks a signature it did not make). No I/O.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

/// Why the issuer could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum LocalIssuerError {
    #[error("could not generate an RSA key")]
    GenerateKey,
    #[error("could not sign an ID token")]
    Sign,
    #[error("could not build the JWKS")]
    Jwks(#[source] serde_json::Error),
}

/// An issuer URL, a key id and an RSA key pair.
pub struct LocalIssuer {
    issuer: String,
    kid: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer").field("issuer", &self.issuer).field("kid", &self.kid).finish()
    }
}

/// The claims of one ID token; [`LocalIssuer::token`] fills `iss` unless told otherwise.
#[derive(Clone, Debug)]
pub struct TokenClaims {
    pub sub: String,
    pub aud: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Replaces the issuer's own `iss`, to make a token another issuer would have made.
    pub iss: Option<String>,
}

impl LocalIssuer {
    /// A new 2048-bit key for `issuer`, with key id `kid`.
    pub fn generate(issuer: impl Into<String>, kid: impl Into<String>) -> Result<Self, LocalIssuerError> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| LocalIssuerError::GenerateKey)?;
        Ok(Self { issuer: issuer.into(), kid: kid.into(), key })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as a JWKS, as an issuer publishes it (e.g. at `/openid/v1/jwks`).
    pub fn jwks_json(&self) -> Value {
        let public = self.key.public_key();
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }]})
    }

    /// [`Self::jwks_json`], parsed.
    pub fn jwks(&self) -> Result<JwkSet, LocalIssuerError> {
        serde_json::from_value(self.jwks_json()).map_err(LocalIssuerError::Jwks)
    }

    /// An RS256 ID token with these claims.
    pub fn token(&self, claims: &TokenClaims) -> Result<String, LocalIssuerError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let aud: Value = match claims.aud.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        let payload = json!({
            "iss": claims.iss.as_deref().unwrap_or(&self.issuer),
            "sub": claims.sub,
            "aud": aud,
            "iat": claims.issued_at.as_second(),
            "nbf": claims.issued_at.as_second(),
            "exp": claims.expires_at.as_second(),
        });
        self.sign(&header, &payload)
    }

    /// Signs any header and payload, for tokens that are wrong on purpose.
    pub fn sign(&self, header: &Value, payload: &Value) -> Result<String, LocalIssuerError> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| LocalIssuerError::Sign)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}
