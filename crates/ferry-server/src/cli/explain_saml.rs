//! `ferry explain --token` for a SAML assertion: verified by its IdP's provider as
//! `/token` would, then explained over the claims the mapping reads.

use std::fmt::Write as _;
use std::sync::Arc;

use ferry_core::config::{Config, Provider, ProviderKind};
use ferry_verify::saml::{self, SamlDocument, SamlPolicy};
use ferry_verify::time::SystemMono;
use serde_json::{Map, Value};

use crate::load::load_providers;

/// The provider, the assertion's claims and its end; or why it is denied.
pub type Verified<'c> = Result<(&'c Provider, Map<String, Value>, Option<i64>), String>;

/// Verifies a SAML token (base64 or raw XML) at `now`, writing what it checked.
pub async fn verify_saml<'c>(
    config: &'c Config,
    text: &str,
    now: i64,
    out: &mut String,
) -> anyhow::Result<Verified<'c>> {
    let deny = |e: saml::SamlError| Ok(Err(format!("invalid_request at verify: {e}")));
    let xml = match saml::decode_or_xml(text) {
        Ok(x) => x,
        Err(e) => return deny(e),
    };
    let doc = match SamlDocument::parse(&xml) {
        Ok(d) => d,
        Err(e) => return deny(e),
    };
    let issuer = match doc.issuer() {
        Ok(i) => i,
        Err(e) => return deny(e),
    };
    let Some(provider) = config
        .provider_for_issuer(&issuer)
        .filter(|p| p.kind == ProviderKind::Saml)
    else {
        let _ = writeln!(out, "provider: none of kind saml for entity id {issuer:?}");
        return Ok(Err(
            "invalid_request at verify: issuer not configured".into()
        ));
    };
    let _ = writeln!(
        out,
        "provider: {} (saml), entity id {}",
        provider.id, provider.issuer
    );
    let (trusted, _) = load_providers(config, Arc::new(SystemMono::default()))
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let Some(tp) = trusted.into_iter().find(|p| p.config.id == provider.id) else {
        anyhow::bail!("provider {} did not load", provider.id);
    };
    let Some(settings) = provider.saml.as_ref() else {
        anyhow::bail!("provider {} has no SAML settings", provider.id);
    };
    let policy = SamlPolicy {
        entity_id: &provider.issuer,
        audiences: &provider.audiences,
        recipients: &settings.recipients,
        leeway: i64::try_from(provider.leeway.as_secs()).unwrap_or(0),
        allow_sha1: settings.allow_sha1,
        max_lifetime: i64::try_from(provider.max_token_lifetime.as_secs()).unwrap_or(i64::MAX),
    };
    match doc.verify(&tp.keys, &policy, now).await {
        Ok(a) => {
            let _ = writeln!(
                out,
                "verify: every signature ok (certificates from the provider); issuer ok; audience ok (one of {:?}); bearer confirmation ok (recipients {:?}); valid for {}s more (leeway {}s){}",
                provider.audiences,
                settings.recipients,
                a.not_on_or_after - now,
                policy.leeway,
                if a.one_time_use || settings.single_use {
                    "; single use (not spent by explain)"
                } else {
                    ""
                },
            );
            Ok(Ok((provider, saml::claims(&a), Some(a.not_on_or_after))))
        }
        Err(e) => {
            let _ = writeln!(out, "verify: FAILED: {e}");
            let code = crate::errors::Role::Subject.saml_error(&e).code;
            Ok(Err(format!("{code} at verify: {e}")))
        }
    }
}
