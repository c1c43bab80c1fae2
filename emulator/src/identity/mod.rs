//! Identity: the token endpoint (client credentials for apps, a password grant for tenant users),
//! the OpenID documents and JWKS that SDKs discover, and the validation of every token the
//! emulator is shown.

pub mod keys;
pub mod routes;
pub mod tokens;

pub use keys::SigningKey;
pub use tokens::{AccessToken, TokenProblem};
