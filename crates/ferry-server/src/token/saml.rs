//! The SAML grant: a `…:saml2` subject token from a `kind: saml` provider. The
//! assertion's `Issuer` picks the provider; its certificates verify every signature; the
//! signed assertion becomes the claims the mapping reads (`assertion.subject`,
//! `assertion.attributes`, `assertion.issuer`); the rest is the pipeline's.

use ferry_core::config::ProviderKind;
use ferry_verify::saml::{self, Assertion, SamlDocument, SamlError, SamlPolicy};
use tracing::Instrument as _;

use super::subject::{Ask, Subject, Trail};
use crate::charge::{Refused, mapped};
use crate::errors::{AssertionError, Role};
use crate::replay::{Spend, issued_at};
use crate::state::{AppState, Loaded, TrustedProvider};

/// Spends the assertion's `ID` until it expires, when it is single use.
async fn spend(
    state: &AppState,
    loaded: &Loaded,
    provider: &TrustedProvider,
    a: &Assertion,
    now: i64,
) -> Result<(), AssertionError> {
    let single = provider.config.saml.as_ref().is_some_and(|s| s.single_use);
    if !(single || a.one_time_use) {
        return Ok(());
    }
    let leeway = i64::try_from(provider.config.leeway.as_secs()).unwrap_or(0);
    let skew = i64::try_from(loaded.config.limits.replay_clock_skew).unwrap_or(0);
    let until = a.not_on_or_after.max(a.confirmed_until);
    let spend = Spend {
        principal: &provider.config.id,
        jti: &a.id,
        // An assertion's window bounds when it can have been issued.
        issued: issued_at(None, until, until.saturating_sub(now).max(0) + 3_600),
        leeway,
        skew,
        until: until.saturating_add(leeway).saturating_add(skew),
        now,
    };
    state.replay.consume(spend).await?;
    Ok(())
}

fn refused(e: &SamlError) -> Refused {
    Refused::Error(Role::Subject.saml_error(e))
}

/// A SAML assertion (or a response holding one) as the subject.
pub async fn saml_assertion(
    state: &AppState,
    loaded: &Loaded,
    ask: &Ask,
    now: i64,
    trail: &mut Trail,
) -> Result<Subject, Refused> {
    let xml = saml::decode(&ask.credential).map_err(|e| refused(&e))?;
    let doc = SamlDocument::parse(&xml).map_err(|e| refused(&e))?;
    let issuer = doc.issuer().map_err(|e| refused(&e))?;
    let provider = loaded
        .providers
        .get(&issuer)
        .filter(|p| p.config.kind == ProviderKind::Saml)
        .ok_or_else(|| Role::Subject.invalid("issuer not configured"))?;
    let settings = provider
        .config
        .saml
        .as_ref()
        .ok_or_else(|| Role::Subject.invalid("issuer not configured"))?;
    trail.provider = Some(provider.config.id.clone());
    trail.original_issuer = Some(issuer.clone());
    let policy = SamlPolicy {
        entity_id: &provider.config.issuer,
        audiences: &provider.config.audiences,
        recipients: &settings.recipients,
        leeway: i64::try_from(provider.config.leeway.as_secs()).unwrap_or(0),
        allow_sha1: settings.allow_sha1,
        max_lifetime: i64::try_from(provider.config.max_token_lifetime.as_secs())
            .unwrap_or(i64::MAX),
    };
    let assertion = doc
        .verify(&provider.keys, &policy, now)
        .instrument(tracing::info_span!("verify", provider = %provider.config.id))
        .await
        .map_err(|e| refused(&e))?;
    trail.original_subject = Some(crate::audit::bounded(&assertion.subject));
    spend(state, loaded, provider, &assertion, now)
        .await
        .map_err(|e| Refused::Error(Role::Subject.assertion_error(&e)))?;
    let claims = saml::claims(&assertion);
    let mut principal = {
        let _span = tracing::info_span!("policy").entered();
        mapped(provider, &claims)?
    };
    // The provenance Ferry's tokens carry (`ferry.iss`, `ferry.sub`): the IdP and NameID.
    principal.original_issuer = assertion.issuer.clone();
    principal.original_subject = Some(assertion.subject.clone());
    // A SAML bearer assertion carries no key Ferry could bind to.
    Ok(super::provider::provider_subject(
        provider,
        principal,
        assertion.not_on_or_after,
        ask,
    ))
}
