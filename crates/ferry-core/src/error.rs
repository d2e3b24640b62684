//! OAuth errors (RFC 6749 §5.2, RFC 8693 §2.2.2). Every step of the request path returns
//! an [`OAuthError`]; the server turns it into a response body in one place. The
//! client-facing description is a `&'static str`, so it can never echo input; what went
//! wrong in detail is kept in `detail` for the logs.

use std::borrow::Cow;

use serde::Serialize;

/// The `error` codes Ferry returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// RFC 6749 §5.2: malformed request, or (RFC 8693 §2.2.2) an invalid subject token.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed.
    InvalidClient,
    /// RFC 6749 §5.2 / RFC 7523: the grant (assertion) is invalid.
    InvalidGrant,
    /// RFC 6749 §5.2: the grant type is not supported.
    UnsupportedGrantType,
    /// RFC 6749 §5.2: the requested scope is not allowed.
    InvalidScope,
    /// RFC 8693 §2.2.2: the audience or resource is not acceptable.
    InvalidTarget,
    /// RFC 6749 §4.1.2.1: a dependency (an issuer's keys) is temporarily unavailable.
    TemporarilyUnavailable,
    /// RFC 9449 §5: the DPoP proof is missing or invalid.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof must carry the server's nonce (given in `DPoP-Nonce`).
    UseDpopNonce,
    /// RFC 6749 §5.2 / RFC 7009 §2.1: the client may not act on this token.
    UnauthorizedClient,
    /// An internal failure; the description never says more.
    ServerError,
}

impl ErrorCode {
    /// The wire form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status for the code (RFC 6749 §5.2: 400, or 401 for client auth).
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            Self::TemporarilyUnavailable => 503,
            Self::ServerError => 500,
            _ => 400,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step of the request path that decided; named in every audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Reading the HTTP request and its form.
    Request,
    /// Verifying the subject token.
    Verify,
    /// The provider's condition and attribute mapping.
    Mapping,
    /// The audience access rules.
    Policy,
    /// The audience's own claims (`audiences[].claims`), computed after the decision.
    Claims,
    /// Computing the lifetime and signing the token.
    Mint,
}

impl Step {
    /// The name used in audit events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Verify => "verify",
            Self::Mapping => "mapping",
            Self::Policy => "policy",
            Self::Claims => "claims",
            Self::Mint => "mint",
        }
    }
}

/// A refusal or failure, with what the client may see and what only the logs may see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} at {}: {detail}", code.as_str(), step.as_str())]
pub struct OAuthError {
    /// The RFC 6749 `error` code.
    pub code: ErrorCode,
    /// The `error_description`: a fixed string, or a message the operator wrote into
    /// the configuration for a denial. Never input.
    pub description: Cow<'static, str>,
    /// The step that decided.
    pub step: Step,
    /// The rule that decided, when one did (`providers[0].condition`, an audience rule).
    pub rule: Option<String>,
    /// Detail for the logs; never sent to the client.
    pub detail: String,
    /// An HTTP status other than the code's own (405, 413, 429).
    pub status: Option<u16>,
    /// Seconds after which a rate-limited client may retry (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Whether an expression failed to evaluate (a missing claim or attribute).
    pub expression_error: bool,
}

impl OAuthError {
    /// A new error with a fixed description.
    pub fn new(code: ErrorCode, step: Step, description: &'static str) -> Self {
        Self {
            code,
            description: Cow::Borrowed(description),
            step,
            rule: None,
            detail: String::new(),
            status: None,
            retry_after: None,
            expression_error: false,
        }
    }

    /// Adds detail for the logs.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Names the rule that decided.
    #[must_use]
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Replaces the description with an operator-written denial message.
    #[must_use]
    pub fn operator_message(mut self, message: &str) -> Self {
        self.description = Cow::Owned(message.to_owned());
        self
    }

    /// Overrides the HTTP status.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.http_status())
    }
}

/// The fixed client-facing descriptions. Kept together so a reviewer can see at a
/// glance that none of them carries input.
pub mod desc {
    pub const BODY_TOO_LARGE: &str = "request body too large";
    pub const CONTENT_TYPE: &str = "content type must be application/x-www-form-urlencoded";
    pub const METHOD: &str = "method not allowed";
    pub const MISSING_GRANT_TYPE: &str = "missing grant_type";
    pub const UNSUPPORTED_GRANT: &str = "unsupported grant_type";
    /// A token narrowed from a token narrowed too many times.
    pub const NARROWED_TOO_OFTEN: &str = "the token was narrowed too many times";
    /// A reference token narrowed into a JWT by name.
    pub const HANDLE_NARROWS_TO_HANDLE: &str =
        "a reference token narrows into a reference token only";
    pub const DUPLICATE_PARAM: &str = "a parameter was given more than once";
    pub const MISSING_SUBJECT_TOKEN: &str = "missing subject_token";
    pub const MISSING_ASSERTION: &str = "missing assertion";
    pub const INVALID_ASSERTION: &str = "invalid assertion";
    pub const INVALID_CLIENT: &str = "client authentication failed";
    pub const INVALID_CLIENT_ID: &str = "an unregistered client_id must be 1 to 128 printable ASCII characters, not beginning with ferry-";
    pub const REPLAY_FULL: &str = "too many live assertions or proofs, retry later";
    /// An assertion issued before the replay state was found lost (it may have been
    /// used before): refused until it expires.
    pub const ASSERTION_BEFORE_REPLAY_LOSS: &str =
        "assertion issued before replay state was lost, retry with a new one";
    /// The same for a DPoP proof.
    pub const DPOP_BEFORE_REPLAY_LOSS: &str =
        "DPoP proof issued before replay state was lost, retry with a new one";
    pub const REFERENCE_FULL: &str = "too many live reference tokens, retry later";
    pub const REFERENCE_TOO_LARGE: &str =
        "the token is too large to be stored as a reference token";
    pub const MISSING_SUBJECT_TOKEN_TYPE: &str = "missing subject_token_type";
    pub const UNSUPPORTED_SUBJECT_TOKEN_TYPE: &str = "unsupported subject_token_type";
    pub const UNSUPPORTED_REQUESTED_TYPE: &str = "unsupported requested_token_type";
    pub const ACTOR_UNSUPPORTED: &str = "actor_token needs actor_token_type jwt or id_token";
    /// An actor token with a grant that takes none (jwt-bearer).
    pub const ACTOR_NOT_FOR_GRANT: &str = "actor_token is not supported with this grant";
    pub const INVALID_ACTOR_TOKEN: &str = "invalid actor token";
    pub const ACTOR_NOT_ALLOWED: &str = "the actor may not act for the subject";
    pub const MISSING_TARGET: &str = "missing audience or resource";
    pub const BAD_RESOURCE: &str = "resource must be an absolute URI without a fragment";
    pub const BAD_SCOPE: &str = "malformed scope";
    pub const INVALID_SUBJECT_TOKEN: &str = "invalid subject token";
    pub const UNTRUSTED_ISSUER: &str = "subject token issuer is not trusted";
    pub const KEYS_UNAVAILABLE: &str = "issuer keys temporarily unavailable";
    /// The shared replay cache cannot be reached.
    pub const REPLAY_UNAVAILABLE: &str = "temporarily unable to check assertion replay";
    /// Signing paused: the key store has been unreachable too long.
    pub const SIGNING_UNAVAILABLE: &str = "temporarily unable to sign tokens";
    /// Revocation state (or reference tokens) cannot be reached.
    pub const REVOCATION_UNAVAILABLE: &str = "temporarily unable to check revocation";
    pub const MISSING_TOKEN: &str = "missing token";
    pub const NOT_YOUR_TOKEN: &str = "the token was not issued to this client";
    pub const NOT_INTROSPECTOR: &str = "this client may not introspect tokens";
    pub const NOT_REVOCATION_READER: &str = "this client may not read the revocation list";
    pub const TOKEN_REVOKED: &str = "the token has been revoked";
    pub const NOT_ATTRIBUTABLE: &str = "not a live token Ferry issued: nothing to revoke (expired, foreign, malformed or unknown handle)";
    pub const RULE_VALUE_TOO_LONG: &str =
        "subject, provider or client_id longer than 1024 bytes: no token carries it";
    pub const ONE_TARGET: &str = "give exactly one of token, subject, provider or client_id";
    pub const CONDITION_DENIED: &str = "subject token rejected by the provider's condition";
    pub const MAPPING_FAILED: &str = "subject token could not be mapped";
    /// An actor token refused by its provider's condition.
    pub const ACTOR_CONDITION_DENIED: &str = "actor token rejected by the provider's condition";
    /// An actor token that could not be mapped.
    pub const ACTOR_MAPPING_FAILED: &str = "actor token could not be mapped";
    pub const TARGET_NOT_ALLOWED: &str = "the requested audience is not available";
    pub const CLAIMS_FAILED: &str = "the claims of the requested audience could not be computed";
    pub const SCOPE_NOT_ALLOWED: &str = "the requested scope is not allowed";
    pub const SUBJECT_EXPIRES_TOO_SOON: &str = "subject token expires too soon";
    /// An `…:mtls` subject token on a connection that presented no client certificate.
    pub const MTLS_SUBJECT_WITHOUT_CERTIFICATE: &str =
        "an mtls subject token needs the client certificate on the connection";
    pub const INTERNAL: &str = "internal error";
    pub const BUSY: &str = "server busy, retry later";
    pub const TIMEOUT: &str = "request timed out";
    pub const RATE_LIMITED: &str = "too many requests, retry later";
    pub const INVALID_DPOP_PROOF: &str = "invalid DPoP proof";
    pub const DPOP_REQUIRED: &str = "a DPoP proof is required";
    pub const CERTIFICATE_REQUIRED: &str = "a client certificate is required";
    pub const CLIENT_CERT_HEADER: &str = "malformed client certificate header";
    pub const CONFLICTING_BINDINGS: &str =
        "the credentials require both a certificate and a DPoP binding";
    pub const DPOP_NONCE: &str = "use the DPoP-Nonce the server provided";
}
