//! The grant and token type URIs Ferry reads and writes (RFC 8693 §3, RFC 7523, and
//! Ferry's own), and the kinds of subject token it accepts and token it issues.

/// `grant_type` of RFC 8693.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `grant_type` of RFC 7523 §2.1.
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `client_assertion_type` of RFC 7523 §2.2.
pub const CLIENT_ASSERTION_JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Token type URIs of RFC 8693 §3.
pub const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// An OpenID Connect ID token.
pub const TT_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// A base64url-encoded SAML 2.0 assertion (or a response holding one).
pub const TT_SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
/// An X.509 certificate chain (Google's X.509 federation): a JSON array of base64 DER
/// certificates, leaf first, whose leaf is the client certificate of the connection.
pub const TT_MTLS: &str = "urn:ietf:params:oauth:token-type:mtls";
/// An OAuth access token.
pub const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Ferry's reference (opaque) token type: a random handle standing for an access token,
/// turned back into it by introspection (the phantom-token pattern).
pub const TT_REFERENCE: &str = "urn:ferry:params:oauth:token-type:reference_token";
/// Ferry's split token: only the signature part of an access token; the whole JWT is
/// kept like a reference token's and handed to a gateway by introspection.
pub const TT_SPLIT: &str = "urn:ferry:token-type:split";

/// The kinds of subject token Ferry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectTokenType {
    /// `…:jwt`
    Jwt,
    /// `…:id_token`
    IdToken,
    /// `…:access_token`: a token Ferry issued, to be narrowed (downscoping).
    AccessToken,
    /// `…:saml2`: a SAML 2.0 assertion from a `kind: saml` provider.
    Saml2,
    /// `…:mtls`: a certificate chain for a `kind: x509` provider.
    Mtls,
}

/// The kinds of token Ferry issues; echoed as `issued_token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedTokenType {
    /// `…:access_token` (the default).
    AccessToken,
    /// `…:jwt`
    Jwt,
    /// Ferry's reference token: an opaque handle.
    Reference,
    /// Ferry's split token: the JWT's signature part, standing for the JWT.
    Split,
}

impl IssuedTokenType {
    /// The token type URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::AccessToken => TT_ACCESS_TOKEN,
            Self::Jwt => TT_JWT,
            Self::Reference => TT_REFERENCE,
            Self::Split => TT_SPLIT,
        }
    }

    /// Whether the holder gets a handle standing for the JWT, not the JWT.
    pub fn is_handle(self) -> bool {
        matches!(self, Self::Reference | Self::Split)
    }
}
