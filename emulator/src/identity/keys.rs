//! The RSA key that signs every token the emulator issues, and its JWKS.
//!
//! The default key is embedded, so its `kid` is the same across restarts and machines: SDKs
//! cache keys by `kid` and refetch an unknown one at most hourly.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const EMBEDDED_KEY: &str = include_str!("../../keys/default-signing-key.pem");

#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: String,
    exponent: String,
    /// Claims of tokens whose signature this key already checked: a bot sends the same token
    /// for an hour, and an RSA check costs more than the rest of a Connector call.
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

/// A verified token's claims, already read into the type its reader asked for.
type Verified = Arc<dyn Any + Send + Sync>;

/// Verified tokens remembered; past it the memory starts over.
const VERIFIED_TOKENS: usize = 4096;

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key shipped with the emulator.
    pub fn embedded() -> Self {
        Self::from_pkcs8_pem(EMBEDDED_KEY)
            .expect("the embedded signing key is a valid PKCS#8 RSA key")
    }

    /// A key from a PKCS#8 PEM (`openssl genpkey -algorithm RSA`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, String> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not a PKCS#8 RSA private key: {e}"))?;
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        let modulus = URL_SAFE_NO_PAD.encode(&n);
        let exponent = URL_SAFE_NO_PAD.encode(&e);
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&n)[..20]);
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let decoding =
            DecodingKey::from_rsa_components(&modulus, &exponent).map_err(|e| e.to_string())?;
        Ok(Self {
            kid,
            encoding,
            decoding,
            modulus,
            exponent,
            verified: Arc::default(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        // Signing a JSON value with a valid RSA key cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The claims of an RS256 `token` signed by this key, read as `T` (lifetime, audience and
    /// issuer are the caller's to check, on every use).
    pub fn verified_claims<T>(&self, token: &str) -> Result<Arc<T>, jsonwebtoken::errors::Error>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let lock = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claims) = lock().get(token).cloned()
            && let Ok(claims) = claims.downcast::<T>()
        {
            return Ok(claims);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims =
            Arc::new(jsonwebtoken::decode::<T>(token, &self.decoding, &validation)?.claims);
        let mut verified = lock();
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    /// The public key as a JWK; `endorsements` is what the Bot Framework's key set adds.
    pub fn jwk(&self, endorsements: Option<&[&str]>) -> Value {
        let mut jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": self.modulus,
            "e": self.exponent,
        });
        if let Some(e) = endorsements {
            jwk["endorsements"] = json!(e);
        }
        jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_key_is_stable_and_verifies_its_own_tokens() {
        let a = SigningKey::embedded();
        let b = SigningKey::embedded();
        assert_eq!(a.kid(), b.kid());
        let token = a.sign(&json!({"aud": "x", "exp": 4_000_000_000u64}));
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&["x"]);
        let data = jsonwebtoken::decode::<Value>(&token, b.decoding_key(), &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(a.kid()));
        assert_eq!(a.jwk(Some(&["msteams"]))["endorsements"][0], "msteams");
    }
}
