//! Charging a token to the right bucket, after verification (the source's and the global
//! buckets were charged before it). A provider's bucket is shared by every workload that
//! trusts the provider, so it is charged only for tokens that passed the provider's
//! condition: a validly signed token of another GitHub organisation, refused by the
//! condition, is charged to the bucket of its own tenant (the provider's `tenant_claim`)
//! and can drain nobody else's.

use ferry_core::error::desc;
use ferry_core::mapping::Principal;
use ferry_core::{ErrorCode, OAuthError, Step};
use serde_json::{Map, Value};

use crate::limits::RetryAfter;
use crate::state::{AppState, TrustedProvider};

/// A `429` for `limit`, counted in metrics.
fn limited(state: &AppState, limit: &str, retry: RetryAfter) -> OAuthError {
    state.metrics.count_limited(limit);
    let mut e = OAuthError::new(ErrorCode::InvalidRequest, Step::Verify, desc::RATE_LIMITED)
        .status(429)
        .detail(format!("{limit} rate limit"));
    e.retry_after = Some(retry.0);
    e
}

/// Charges a registered client's bucket (an unregistered id is a label anyone may
/// invent: a bucket per label would let callers grow the map at will).
pub fn client(state: &AppState, id: &str) -> Result<(), OAuthError> {
    state.limits.check_client(id).map_err(|retry| {
        let mut e = limited(state, "client", retry);
        e.step = Step::Request;
        e
    })
}

/// Charges the bucket of provider `id` (a token that passed its condition, or a Ferry
/// token it was first issued from).
pub fn provider(state: &AppState, id: &str) -> Result<(), OAuthError> {
    state
        .limits
        .check_provider(id)
        .map_err(|retry| limited(state, "provider", retry))
}

/// A grant's refusal. One refused by a provider's condition is charged to the bucket of
/// its tenant (whose `429` then replaces the refusal); any other costs nothing more.
#[derive(Debug)]
pub enum Refused {
    /// Refused before or outside a provider's condition.
    Error(OAuthError),
    /// Refused by provider `provider`'s condition or mapping, for tenant `tenant`.
    Condition {
        /// The refusal.
        error: Box<OAuthError>,
        /// The provider whose condition refused.
        provider: String,
        /// The token's tenant (the provider's `tenant_claim`).
        tenant: String,
    },
}

impl From<OAuthError> for Refused {
    fn from(e: OAuthError) -> Self {
        Self::Error(e)
    }
}

/// Applies the provider's condition and mapping to verified `claims`; nothing charged.
pub fn mapped(p: &TrustedProvider, claims: &Map<String, Value>) -> Result<Principal, Refused> {
    p.config
        .mapping
        .apply(&p.config.id, claims, None)
        .map_err(|error| Refused::Condition {
            error: Box::new(error),
            provider: p.config.id.clone(),
            tenant: p
                .config
                .tenant_claim
                .value(claims)
                .unwrap_or_default()
                .into_owned(),
        })
}

/// Charges whoever is to pay for `outcome`: provider `payer` for a subject that passed
/// its condition, the tenant for one its condition refused.
pub fn settle<T>(
    state: &AppState,
    payer: impl FnOnce(&T) -> String,
    outcome: Result<T, Refused>,
) -> Result<T, OAuthError> {
    match outcome {
        Ok(v) => {
            provider(state, &payer(&v))?;
            Ok(v)
        }
        Err(Refused::Error(e)) => Err(e),
        Err(Refused::Condition {
            error,
            provider,
            tenant,
        }) => {
            state
                .limits
                .check_tenant(&provider, &tenant)
                .map_err(|retry| limited(state, "tenant", retry))?;
            Err(*error)
        }
    }
}
