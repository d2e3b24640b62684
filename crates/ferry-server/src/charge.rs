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

/// Charges the bucket of provider `id` (a token that passed its condition, or a Ferry
/// token it was first issued from).
pub fn provider(state: &AppState, id: &str) -> Result<(), OAuthError> {
    state
        .limits
        .check_provider(id)
        .map_err(|retry| limited(state, "provider", retry))
}

/// Applies the provider's condition and mapping to verified `claims`, then charges the
/// bucket of whoever is to pay: the provider's when the condition passed, else the
/// tenant's (whose `429` then replaces the refusal).
pub fn map(
    state: &AppState,
    p: &TrustedProvider,
    claims: &Map<String, Value>,
) -> Result<Principal, OAuthError> {
    match p.config.mapping.apply(&p.config.id, claims, None) {
        Ok(principal) => {
            provider(state, &p.config.id)?;
            Ok(principal)
        }
        Err(refused) => {
            let tenant = p.config.tenant_claim.value(claims).unwrap_or_default();
            state
                .limits
                .check_tenant(&p.config.id, &tenant)
                .map_err(|retry| limited(state, "tenant", retry))?;
            Err(refused)
        }
    }
}
