//! The success body of RFC 8693 §2.2.1, in the exact shape every standard client
//! accepts: all four fields, `expires_in` an integer, `scope` a space-delimited string.

use serde::Serialize;

/// A token-exchange response.
#[derive(Serialize)]
pub struct TokenResponse {
    /// The issued token.
    pub access_token: String,
    /// The type of the issued token (RFC 8693 §2.2.1).
    pub issued_token_type: &'static str,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes, space-delimited, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("issued_token_type", &self.issued_token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// An error body (RFC 6749 §5.2).
#[derive(Debug, Serialize)]
pub struct ErrorResponse {
    /// The error code.
    pub error: &'static str,
    /// A fixed description (or an operator-written denial message).
    pub error_description: String,
}
