//! One mapping from inner errors to OAuth errors (RFC 6749 §5.2, RFC 8693 §2.2.2), by
//! the role of the token that failed. Verification and replay errors are typed
//! ([`VerifyError`], [`AssertionError`], [`ReplayError`]); no path decides by itself, and
//! none by matching strings, what a client sees.
//!
//! | inner error | subject · parent | actor | client assertion | service-account assertion (jwt-bearer) |
//! |---|---|---|---|---|
//! | issuer keys unavailable ([`VerifyError::KeysUnavailable`]) | 503 `temporarily_unavailable` | 503 | 503 | 503 |
//! | replay cache unreachable or full | 503 `temporarily_unavailable` | — | 503 | 503 |
//! | any other verification failure, a replayed or malformed assertion | 400 `invalid_request` | 400 `invalid_request` | 401 `invalid_client` | 400 `invalid_grant` |
//! | assertion issued before the replay state was lost | 400 `invalid_request` | — | 401 `invalid_client` | 400 `invalid_grant` |
//!
//! An outage is nobody's fault but the issuer's: the same token will do once the keys
//! can be fetched again, so it is never answered as if the token (or the client) were
//! bad. The description of every case is a fixed string from [`desc`].

use ferry_core::error::desc;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_verify::{KeysError, VerifyError};

use crate::replay::ReplayError;

/// The role of the token whose verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The `subject_token` of a token exchange: a provider's token, or a service
    /// account's assertion given as one (RFC 8693 §2.2.2: `invalid_request`).
    Subject,
    /// The `actor_token` (RFC 8693 §2.2.2: `invalid_request`).
    Actor,
    /// A `client_assertion` (`private_key_jwt`, RFC 7523 §3.2: `invalid_client`).
    ClientAssertion,
    /// A service account's `assertion` in the jwt-bearer grant (RFC 7523 §3.1:
    /// `invalid_grant`).
    ServiceAccountAssertion,
    /// A Ferry access token (or reference handle) being narrowed: a subject token.
    Parent,
}

impl Role {
    /// The role's own "this token is not acceptable" error.
    pub fn invalid(self, detail: impl Into<String>) -> OAuthError {
        let (code, step, description) = match self {
            Self::Subject | Self::Parent => (
                ErrorCode::InvalidRequest,
                Step::Verify,
                desc::INVALID_SUBJECT_TOKEN,
            ),
            Self::Actor => (
                ErrorCode::InvalidRequest,
                Step::Verify,
                desc::INVALID_ACTOR_TOKEN,
            ),
            Self::ClientAssertion => (
                ErrorCode::InvalidClient,
                Step::Request,
                desc::INVALID_CLIENT,
            ),
            Self::ServiceAccountAssertion => (
                ErrorCode::InvalidGrant,
                Step::Verify,
                desc::INVALID_ASSERTION,
            ),
        };
        OAuthError::new(code, step, description).detail(detail)
    }

    /// A verification failure of a token in this role.
    pub fn verify_error(self, e: &VerifyError) -> OAuthError {
        match e {
            VerifyError::KeysUnavailable(why) => keys_unavailable(self, why),
            other => self.invalid(other.to_string()),
        }
    }

    /// A refused SAML assertion in this role: an unreachable metadata URL with no usable
    /// certificates cached is an outage (503), like an issuer's keys.
    pub fn saml_error(self, e: &ferry_verify::saml::SamlError) -> OAuthError {
        match e {
            ferry_verify::saml::SamlError::KeysUnavailable(why) => keys_unavailable(self, why),
            other => self.invalid(other.to_string()),
        }
    }

    /// A refused assertion (a client's or a service account's) in this role.
    pub fn assertion_error(self, e: &AssertionError) -> OAuthError {
        match e {
            AssertionError::Verify(v) => self.verify_error(v),
            AssertionError::Unavailable => replay_unavailable(),
            // Not a replay and not the assertion's fault: audited as what it is.
            AssertionError::Full | AssertionError::ShareFull => replay_full(e.to_string()),
            // The role's error, with a description that tells the client a new assertion
            // (issued now) will do.
            AssertionError::BeforeLoss => {
                let mut out = self.invalid(e.to_string());
                out.description = desc::ASSERTION_BEFORE_REPLAY_LOSS.into();
                out
            }
            other => self.invalid(other.to_string()),
        }
    }
}

/// The issuer of a token in `role` cannot be reached and no usable keys are cached:
/// `503 temporarily_unavailable`, whatever the role.
fn keys_unavailable(role: Role, why: &KeysError) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Step::Verify,
        desc::KEYS_UNAVAILABLE,
    )
    .detail(format!("{role:?}: {why}"))
}

/// The shared replay cache cannot be reached: 503.
pub fn replay_unavailable() -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Step::Verify,
        desc::REPLAY_UNAVAILABLE,
    )
    .detail("replay cache unreachable")
}

/// The revocation state (or the reference-token store) cannot be reached: 503. The
/// typed cause (`revocation::StoreError`, …) goes to the audit detail, never the body.
pub fn revocation_unavailable(detail: impl std::fmt::Display) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Step::Verify,
        desc::REVOCATION_UNAVAILABLE,
    )
    .detail(detail.to_string())
}

/// The replay cache (or a principal's share of it) is full of live entries: 503.
pub fn replay_full(detail: impl Into<String>) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Step::Verify,
        desc::REPLAY_FULL,
    )
    .detail(detail)
}

/// Why an assertion (RFC 7523: a client's or a service account's) was refused; for
/// logs, and for [`Role::assertion_error`] to choose the client's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// Signature, issuer, audience or time checks failed, or the keys are unavailable.
    #[error("{0}")]
    Verify(#[from] VerifyError),
    /// The `iss` names no registered service account.
    #[error("not a registered service account")]
    UnknownAccount,
    /// `sub` is not the issuer.
    #[error("sub is not the issuer")]
    Subject,
    /// No `jti`.
    #[error("jti is required")]
    Jti,
    /// `aud` is not the single string required.
    #[error("aud must be a single string naming Ferry's issuer")]
    Audience,
    /// Seen before.
    #[error("assertion replayed")]
    Replayed,
    /// Issued before the replay state was lost: it may have been seen.
    #[error("assertion issued before replay state was lost")]
    BeforeLoss,
    /// The replay cache is full of live assertions.
    #[error("replay cache full")]
    Full,
    /// The account holds its whole share of the replay cache.
    #[error("replay cache share of this account full")]
    ShareFull,
    /// The shared replay cache cannot be reached.
    #[error("replay cache unavailable")]
    Unavailable,
}

impl From<ReplayError> for AssertionError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => Self::Replayed,
            ReplayError::BeforeLoss => Self::BeforeLoss,
            ReplayError::Full => Self::Full,
            ReplayError::ShareFull => Self::ShareFull,
            ReplayError::Unavailable => Self::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 5] = [
        Role::Subject,
        Role::Actor,
        Role::ClientAssertion,
        Role::ServiceAccountAssertion,
        Role::Parent,
    ];

    fn answer(e: &OAuthError) -> (u16, &'static str, &str) {
        (e.http_status(), e.code.as_str(), &e.description)
    }

    /// An issuer outage is the same 503 for every role; its twin, a bad signature,
    /// is each role's own refusal.
    #[test]
    fn an_outage_is_503_for_every_role_and_a_bad_token_is_the_roles_own_error() {
        let outage = VerifyError::KeysUnavailable(KeysError::Fetch {
            at: "https://idp.example.com/keys".into(),
            error: ferry_verify::FetchError::Request("connection refused".into()),
        });
        let bad = VerifyError::BadSignature;
        for role in ROLES {
            assert_eq!(
                answer(&role.verify_error(&outage)),
                (503, "temporarily_unavailable", desc::KEYS_UNAVAILABLE),
                "{role:?}"
            );
            assert_eq!(
                answer(&role.assertion_error(&AssertionError::Verify(outage.clone()))),
                (503, "temporarily_unavailable", desc::KEYS_UNAVAILABLE),
                "{role:?}"
            );
            let own = role.invalid("");
            assert_eq!(answer(&role.verify_error(&bad)), answer(&own), "{role:?}");
        }
        let table = [
            (
                Role::Subject,
                400,
                "invalid_request",
                desc::INVALID_SUBJECT_TOKEN,
            ),
            (
                Role::Parent,
                400,
                "invalid_request",
                desc::INVALID_SUBJECT_TOKEN,
            ),
            (
                Role::Actor,
                400,
                "invalid_request",
                desc::INVALID_ACTOR_TOKEN,
            ),
            (
                Role::ClientAssertion,
                401,
                "invalid_client",
                desc::INVALID_CLIENT,
            ),
            (
                Role::ServiceAccountAssertion,
                400,
                "invalid_grant",
                desc::INVALID_ASSERTION,
            ),
        ];
        for (role, status, code, description) in table {
            assert_eq!(answer(&role.invalid("")), (status, code, description));
        }
    }

    /// The replay cache unreachable or full is 503 for an assertion in any role; a
    /// plain replay is the role's own error (twin).
    #[test]
    fn replay_outages_are_503_and_a_replay_is_the_roles_error() {
        for role in [
            Role::ClientAssertion,
            Role::ServiceAccountAssertion,
            Role::Subject,
        ] {
            for e in [
                AssertionError::Unavailable,
                AssertionError::Full,
                AssertionError::ShareFull,
            ] {
                assert_eq!(role.assertion_error(&e).http_status(), 503, "{role:?} {e}");
            }
            assert_eq!(
                answer(&role.assertion_error(&AssertionError::Replayed)),
                answer(&role.invalid(""))
            );
        }
    }

    /// An assertion issued before a loss keeps the error code of its role (a grant's
    /// `invalid_grant`, a client assertion's `invalid_client`) with a fixed description;
    /// a plain replay keeps the role's own description (twin).
    #[test]
    fn an_assertion_issued_before_a_loss_says_so_in_its_roles_error() {
        for (role, code) in [
            (Role::ServiceAccountAssertion, ErrorCode::InvalidGrant),
            (Role::ClientAssertion, ErrorCode::InvalidClient),
        ] {
            let lost = role.assertion_error(&AssertionError::BeforeLoss);
            assert_eq!(lost.code, code);
            assert_eq!(lost.description, desc::ASSERTION_BEFORE_REPLAY_LOSS);
            let replayed = role.assertion_error(&AssertionError::Replayed);
            assert_eq!(replayed.code, code);
            assert_eq!(replayed.description, role.invalid("").description);
        }
    }
}
