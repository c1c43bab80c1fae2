//! Identity: the token endpoint (client credentials for apps, a password grant for tenant users),
//! the OpenID documents and JWKS that SDKs discover, and the validation of every token the
//! emulator is shown.

pub mod keys;
pub mod routes;
pub mod tokens;

pub use keys::SigningKey;
pub use tokens::{AccessToken, TokenProblem};

/// How activities to the bot are signed and Connector calls authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BotAuth {
    /// Activities carry a channel JWT; Connector calls need a bearer token from the emulator.
    #[default]
    Signed,
    /// No `Authorization` either way, like a bot run without `MicrosoftAppId`.
    None,
}
