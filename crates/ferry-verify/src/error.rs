//! Why a token failed verification. For logs and for deciding what to do (an unknown
//! `kid` may mean the issuer rotated); never sent to a client as is.

/// A verification failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed compact JWS.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not allowed for this issuer (`none` and HMAC never are).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header carries `crit`, which Ferry understands no extension of (RFC 7515 §4.1.11).
    #[error("critical header parameters are not supported")]
    CriticalHeader,
    /// The header carries a key, a key URL, `b64: false`, `cty: JWT` or `zip`.
    #[error("header not accepted: {0}")]
    HeaderNotAccepted(&'static str),
    /// `typ` names a kind of token not accepted here (RFC 8725 §3.11).
    #[error("token type not accepted here")]
    TypeNotAccepted,
    /// No key matches the `kid` and `alg`.
    #[error("no key matches the token's kid and alg")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A required claim is missing or has the wrong type.
    #[error("claim '{0}' missing or of the wrong type")]
    Claim(&'static str),
    /// `iss` does not match.
    #[error("issuer mismatch")]
    Issuer,
    /// No accepted audience in `aud`.
    #[error("audience mismatch")]
    Audience,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// The issuer's keys cannot be had (issuer unreachable and no usable cached keys).
    /// Distinct by type from every "the token is bad" variant, so a caller answers an
    /// outage as one (`503`), never as a bad token.
    #[error("issuer keys unavailable: {0}")]
    KeysUnavailable(crate::keys_error::KeysError),
    /// `exp - iat` exceeds the allowed lifetime, or the token is older than allowed.
    #[error("token lifetime or age exceeds the allowed maximum")]
    TooLong,
}
