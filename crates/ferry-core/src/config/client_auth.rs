//! How a registered client authenticates.

/// How a client authenticates at `/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client: `client_id` only.
    None,
    /// HTTP Basic with the client secret (RFC 6749 §2.3.1).
    SecretBasic,
    /// `client_secret` in the form.
    SecretPost,
    /// A JWT signed with the client's key (RFC 7523 §2.2).
    PrivateKeyJwt,
    /// A certificate from a CA, matched by one name (RFC 8705 §2.1).
    TlsClientAuth,
    /// A self-signed certificate whose key is one of the client's (RFC 8705 §2.2).
    SelfSignedTlsClientAuth,
}

impl ClientAuth {
    /// The RFC 8414 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SecretBasic => "client_secret_basic",
            Self::SecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
            Self::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Whether the client authenticates with its TLS certificate (RFC 8705 §2).
    pub fn is_certificate(self) -> bool {
        matches!(self, Self::TlsClientAuth | Self::SelfSignedTlsClientAuth)
    }
}
