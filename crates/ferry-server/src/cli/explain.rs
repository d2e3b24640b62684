//! `ferry explain`: every step of one decision, for a real token (signature and claim
//! checks included) or for bare claims (`--claims`, to author policies offline).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use ferry_core::Clock;
use ferry_core::config::{Config, Provider};
use ferry_core::decision::{Ask, decide};
use ferry_core::policy::Situation;
use ferry_core::request::parse_scope;
use ferry_verify::time::SystemMono;
use serde_json::{Map, Value};

use super::{numeric, provider_for};
use crate::load::load_providers;

/// What to explain.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A token file: verified like `/token` would.
    Token(String),
    /// A JSON object of claims: verification skipped.
    Claims(Map<String, Value>),
}

/// The report and whether the decision was allow.
#[derive(Debug)]
pub struct Report {
    /// Human-readable lines.
    pub text: String,
    /// Allowed?
    pub allowed: bool,
}

/// Reads a `--token` or `--claims` file.
pub fn read_subject(token: Option<&Path>, claims: Option<&Path>) -> anyhow::Result<Subject> {
    match (token, claims) {
        (Some(t), None) => Ok(Subject::Token(
            std::fs::read_to_string(t)?.trim().to_owned(),
        )),
        (None, Some(c)) => {
            let v: Value = serde_json::from_slice(&std::fs::read(c)?)?;
            match v {
                Value::Object(m) => Ok(Subject::Claims(m)),
                _ => anyhow::bail!("the claims file must hold a JSON object"),
            }
        }
        _ => anyhow::bail!("give exactly one of --token or --claims"),
    }
}

/// The provider a subject is explained for, its claims and their `exp`; or why the
/// request is denied.
type Verified<'c> = Result<(&'c Provider, Map<String, Value>, Option<i64>), String>;

fn describe_provider(out: &mut String, provider: &Provider) {
    let _ = writeln!(
        out,
        "provider: {} ({}), issuer {}",
        provider.id,
        provider.kind.as_str(),
        provider.issuer
    );
}

/// `--claims`: the provider they name; nothing is verified.
fn from_claims<'c>(
    config: &'c Config,
    claims: Map<String, Value>,
    out: &mut String,
) -> Verified<'c> {
    let provider = provider_for(config, None, &claims)
        .map_err(|e| format!("invalid_request at verify: {e}"))?;
    describe_provider(out, provider);
    let _ = writeln!(
        out,
        "verify: skipped (--claims: signature and claim checks are not run)"
    );
    let exp = numeric(&claims, "exp");
    Ok((provider, claims, exp))
}

/// `--token`: verified by its issuer's provider as `/token` would.
async fn verify_token<'c>(
    config: &'c Config,
    token: &str,
    now: i64,
    out: &mut String,
) -> anyhow::Result<Verified<'c>> {
    let parsed = ferry_verify::parse(token).and_then(|t| match t.issuer() {
        Some(iss) => Ok((iss.to_owned(), t)),
        None => Err(ferry_verify::VerifyError::Claim("iss")),
    });
    let (iss, parsed) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("invalid_request at verify: {e}"))),
    };
    let Some(provider) = config.provider_for_issuer(&iss) else {
        let _ = writeln!(out, "provider: none for issuer {iss:?}");
        return Ok(Err(
            "invalid_request at verify: issuer not configured".into()
        ));
    };
    describe_provider(out, provider);
    let (trusted, _) = load_providers(config, Arc::new(SystemMono::default()))
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let Some(tp) = trusted.into_iter().find(|p| p.config.id == provider.id) else {
        anyhow::bail!("provider {} did not load", provider.id);
    };
    match parsed.verify(&tp.rules, &tp.keys, now).await {
        Ok(v) => {
            let _ = writeln!(
                out,
                "verify: signature ok ({}, kid {}); typ {}; iss ok; aud ok (one of {:?}); exp ok (in {}s, leeway {}s); nbf ok; iat ok; lifetime ≤ {}s",
                v.header.alg,
                v.header.kid.as_deref().unwrap_or("none"),
                v.header.typ.as_deref().unwrap_or("absent"),
                tp.rules.audiences(),
                v.exp - now,
                tp.rules.leeway(),
                tp.rules.max_lifetime(),
            );
            Ok(Ok((provider, v.claims, Some(v.exp))))
        }
        Err(e) => {
            let _ = writeln!(out, "verify: FAILED: {e}");
            // The code the server would answer (an outage is not a bad token).
            let code = crate::errors::Role::Subject.verify_error(&e).code;
            Ok(Err(format!("{code} at verify: {e}")))
        }
    }
}

/// What rules see as the request's context (`request.*`) in an explanation: the client's
/// address, whether the token would be key-bound, whether the client authenticated.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainContext {
    /// `request.source_ip`.
    pub source_ip: Option<std::net::IpAddr>,
    /// `request.sender_constrained`.
    #[serde(default)]
    pub sender_constrained: bool,
    /// `request.client_authenticated`.
    #[serde(default)]
    pub client_authenticated: bool,
}

/// Explains the decision for `subject` and the request.
pub async fn explain(
    config: &Config,
    clock: &dyn Clock,
    subject: Subject,
    audiences: &[String],
    scope: Option<&str>,
    client_id: Option<&str>,
    context: &ExplainContext,
) -> anyhow::Result<Report> {
    // With bare claims the clock is their `iat` when present, as in `ferry test`, so an
    // authored example explains the same way whenever it is run.
    let now = match &subject {
        Subject::Claims(c) => numeric(c, "iat").unwrap_or_else(|| clock.now()),
        Subject::Token(_) => clock.now(),
    };
    let mut out = String::new();
    let deny = |mut out: String, why: String| {
        let _ = writeln!(out, "decision: DENY — {why}");
        Ok(Report {
            text: out,
            allowed: false,
        })
    };
    let scopes = match scope.map(parse_scope).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return deny(out, format!("{}: {}", e.code, e.description)),
    };

    let verified = match subject {
        Subject::Claims(claims) => from_claims(config, claims, &mut out),
        // A JWT has three dot-separated parts; anything else is read as SAML.
        Subject::Token(token) if !token.contains('.') || token.starts_with('<') => {
            super::explain_saml::verify_saml(config, &token, now, &mut out).await?
        }
        Subject::Token(token) => verify_token(config, &token, now, &mut out).await?,
    };
    let (provider, claims, exp) = match verified {
        Ok(v) => v,
        Err(why) => return deny(out, why),
    };

    let mut trace = Vec::new();
    let ask = Ask {
        targets: audiences,
        scopes: &scopes,
        client_id,
        actor: None,
        // `request.time` is the explanation's now; the rest as the caller says.
        situation: Situation {
            source_ip: context.source_ip,
            time: now,
            sender_constrained: context.sender_constrained,
            client_authenticated: context.client_authenticated,
        },
    };
    let result = decide(config, provider, &claims, exp, now, ask, Some(&mut trace));
    for line in trace {
        let _ = writeln!(out, "{line}");
    }
    match result {
        Ok(o) => Ok(allowed(out, &o)),
        Err(e) => deny(
            out,
            format!(
                "{} at {}{}: {}",
                e.code,
                e.step.as_str(),
                e.rule.map(|r| format!(" by {r}")).unwrap_or_default(),
                if e.detail.is_empty() {
                    e.description.to_string()
                } else {
                    e.detail
                }
            ),
        ),
    }
}

/// The report of an allowed decision: its summary and the audiences' own claims.
fn allowed(mut out: String, o: &ferry_core::decision::Outcome) -> Report {
    let _ = writeln!(
        out,
        "decision: ALLOW — subject {:?}, audiences {:?}, scopes {:?}, lifetime {}s, by {}",
        o.principal.subject,
        o.grant.audiences,
        o.grant.scopes,
        o.ttl,
        o.grant.rules.join(", ")
    );
    if !o.grant.claims.is_empty() {
        let _ = writeln!(
            out,
            "claims: {}",
            serde_json::Value::Object(o.grant.claims.clone())
        );
    }
    Report {
        text: out,
        allowed: true,
    }
}
