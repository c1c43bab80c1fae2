//! The RSA key that signs every token the emulator issues, and its JWKS.
//!
//! The default key is embedded, so its `kid` is the same across restarts and machines: SDKs
//! cache keys by `kid` and refetch an unknown one at most hourly.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const EMBEDDED_KEY: &str = include_str!("../../keys/default-signing-key.pem");

#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: String,
    exponent: String,
}

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
