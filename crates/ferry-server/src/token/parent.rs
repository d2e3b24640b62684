//! The grant of a Ferry token to narrow (server-side downscoping): a token Ferry issued,
//! presented as `subject_token_type=urn:ietf:params:oauth:token-type:access_token`, or its
//! reference handle. It becomes a [`Subject`] whose policy is "narrower than this parent"
//! ([`ferry_core::narrow`]). Ferry's own tokens are never accepted as `…:jwt` or
//! `…:id_token` subjects (their `typ` is `at+jwt` and Ferry is not its own provider).
//! Narrowing is charged to the provider the parent was first issued from.

use ferry_core::error::desc;
use ferry_core::mapping::Principal;
use ferry_core::narrow::{self, Parent};
use ferry_core::request::IssuedTokenType;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_token::AccessClaims;
use ferry_verify::{Algorithm, Rules, Verified};
use serde::Deserialize as _;

use super::provider::carried;
use super::subject::{Ask, Policy, Subject, Trail};
use crate::charge::Refused;
use crate::errors::Role;
use crate::ids::fingerprint;
use crate::state::{AppState, Loaded};
use crate::tokens::handle_kind;

/// A reference or split token stands for its JWT, which its holder never sees: what
/// narrows a handle is a handle — a split token when asked for or narrowed from one, a
/// reference token otherwise (a request for a JWT by name is refused).
fn issued_type(
    from_handle: Option<IssuedTokenType>,
    requested: IssuedTokenType,
) -> Result<IssuedTokenType, OAuthError> {
    match (from_handle, requested) {
        (None, t) => Ok(t),
        (Some(_), IssuedTokenType::Jwt) => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Request,
            desc::HANDLE_NARROWS_TO_HANDLE,
        )),
        (Some(_), t) if t.is_handle() => Ok(t),
        (Some(parent), _) => Ok(parent),
    }
}

/// The parent JWT: the credential, or the JWT its handle stands for.
async fn parent_jwt(state: &AppState, credential: &str, now: i64) -> Result<String, OAuthError> {
    if handle_kind(credential).is_none() {
        return Ok(credential.to_owned());
    }
    state
        .revocations
        .get_handle(&fingerprint(credential.as_bytes()), now)
        .await
        .map_err(crate::errors::revocation_unavailable)?
        .ok_or_else(|| Role::Parent.invalid("unknown or expired reference or split token"))
}

/// Verifies the parent: signed by Ferry's own keys, `typ` `at+jwt`, unexpired, for the
/// audiences asked for (an audience it does not hold would be widening).
fn verify_parent(
    state: &AppState,
    loaded: &Loaded,
    jwt: ferry_verify::Unverified<'_>,
    targets: &[String],
    now: i64,
) -> Result<Verified, OAuthError> {
    let longest = crate::tokens::longest_lifetime(state, &loaded.config).saturating_add(60);
    let rules = Rules::new(loaded.config.issuer.clone(), targets.to_vec())
        .require_type(ferry_token::ACCESS_TOKEN_TYPE)
        .set_allowed_algorithms(Algorithm::ferry())
        // The parent may hold audiences beside the ones asked for (narrowing drops them).
        .accept_other_audiences()
        .allow_lifetime_up_to(std::time::Duration::from_secs(longest.unsigned_abs()));
    let keys = state.own_keys.get(&state.keys);
    jwt.verify_with_keys(&rules, &keys, now)
        .map_err(|e| match e {
            ferry_verify::VerifyError::Audience => narrow::audience_not_held(),
            e => Role::Parent.verify_error(&e),
        })
}

/// A Ferry token to narrow.
pub async fn ferry_token(
    state: &AppState,
    loaded: &Loaded,
    ask: &Ask,
    now: i64,
    trail: &mut Trail,
) -> Result<Subject, Refused> {
    trail.provider = Some("ferry".to_owned());
    trail.original_issuer = Some(loaded.config.issuer.clone());
    let issued = issued_type(handle_kind(&ask.credential), ask.issued)?;
    let jwt = parent_jwt(state, &ask.credential, now).await?;
    // Parsed once: read for its audiences (none requested keeps the parent's), then
    // verified.
    let token = ferry_verify::parse(&jwt).map_err(|e| Role::Parent.verify_error(&e))?;
    let held = if ask.targets.is_empty() {
        token
            .unverified_claims()
            .get("aud")
            .and_then(|a| ferry_token::Audience::deserialize(a).ok())
            .map(|a| a.0)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let targets = narrow::targets(&ask.targets, &held);
    if targets.is_empty() {
        return Err(Role::Parent
            .invalid("no audience requested and none in the parent")
            .into());
    }
    let verified = verify_parent(state, loaded, token, &targets, now)?;
    // Signed by Ferry as an access token, so it fits Ferry's token profile.
    let mut c = AccessClaims::from_map(&verified.claims)
        .map_err(|_| Role::Parent.invalid("the parent token's claims are malformed"))?;
    trail.original_subject = Some(crate::audit::bounded(&c.sub));
    // A revoked parent (or one with a revoked ancestor) cannot be narrowed.
    match crate::tokens::is_revoked(state, &c, now).await {
        Ok(false) => {}
        // RFC 8693 §2.2.2: an unacceptable subject token is `invalid_request`.
        Ok(true) => {
            return Err(Role::Parent
                .invalid("the parent token has been revoked")
                .into());
        }
        Err(e) => return Err(crate::errors::revocation_unavailable(e).into()),
    }
    let (binding, _, _) = carried(&verified.claims, &loaded.config.issuer, Role::Parent)?;
    let parent = Parent {
        audiences: c.aud.0.clone(),
        scopes: c.scope.0.clone(),
        exp: verified.exp,
        boundaries: c.access_boundaries.clone().unwrap_or_default(),
        bound: binding.jkt().is_some(),
        ancestors: c.ferry.ancestors.clone(),
        jti: c.jti.clone(),
        claims: std::mem::take(&mut c.custom),
    };
    let principal = Principal {
        provider: c.ferry.provider.clone(),
        subject: c.sub.clone(),
        groups: c.groups.clone(),
        attributes: c.attributes.clone(),
        original_issuer: c.ferry.iss.clone(),
        original_subject: c.ferry.sub.clone(),
        ancestors: narrow::lineage(&parent)?,
        // Ferry's own chain, as Ferry recorded it.
        subject_act: c.act,
    };
    Ok(Subject {
        principal,
        payer: c.ferry.provider.clone(),
        exp: Some(verified.exp),
        cap_at_exp: true,
        binding,
        may_act: c.may_act,
        policy: Policy::Narrower { parent, targets },
        client_id: c.client_id,
        issued,
    })
}
