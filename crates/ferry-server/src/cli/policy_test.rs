//! `ferry test`: table-driven policy tests. Each case gives claims and a request and the
//! expected decision (and, optionally, the rule, step, error, scopes and the audiences'
//! own claims, `token_claims`). The run stops
//! at the first mismatch with a non-zero exit, so trust policies can be tested in CI.
//!
//! ```yaml
//! cases:
//!   - name: main branch may deploy
//!     claims: { iss: https://token.actions.githubusercontent.com, repository_owner_id: "65", … }
//!     audience: https://deploy.example.com
//!     scope: deploy:write
//!     expect: allow
//!     rule: audiences[0].rules[0]
//!   - name: forks may not
//!     claims: { … }
//!     audience: https://deploy.example.com
//!     expect: deny
//!     step: policy
//!     error: invalid_target
//! ```
//!
//! The clock is the claims' `iat` when present, so cases do not depend on when they run.
//! A case for a SAML provider gives `claims: {issuer, subject, attributes}` or the
//! `assertion` itself (XML or base64; read, not verified).

use serde::Deserialize;
use serde_json::{Map, Value};

use ferry_core::config::Config;
use ferry_core::decision::{Ask, decide};
use ferry_core::policy::Situation;
use ferry_core::request::parse_scope;

use super::{numeric, provider_for};

/// A file of cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cases {
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The request is allowed.
    Allow,
    /// The request is denied.
    Deny,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A name for the report.
    pub name: String,
    /// The verified claims (for a SAML provider: `subject`, `issuer`, `attributes`) …
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// … or a SAML assertion (XML, or base64 as sent to `/token`) whose issuer, subject
    /// and attributes become the claims; its signature and times are not checked here.
    pub assertion: Option<String>,
    /// The provider id; by default the one whose issuer is `claims.iss`.
    pub provider: Option<String>,
    /// One requested audience …
    pub audience: Option<String>,
    /// … or several.
    pub audiences: Option<Vec<String>>,
    /// Requested scopes, space-delimited.
    pub scope: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// The expected decision.
    pub expect: Expect,
    /// The rule expected to decide (allow: the allowing rule; deny: the denying one).
    pub rule: Option<String>,
    /// The step expected to deny (`mapping`, `policy`, `claims`, `mint`).
    pub step: Option<String>,
    /// The error code expected for a denial.
    pub error: Option<String>,
    /// The scopes expected to be granted.
    pub scopes: Option<Vec<String>>,
    /// The audiences' own claims expected in the token (`audiences[].claims`), all of
    /// them: a claim missing here or valued otherwise fails the case.
    pub token_claims: Option<Map<String, Value>>,
    /// What rules see as `request.*` besides the audiences and scopes.
    #[serde(default)]
    pub request: RequestCase,
}

/// A case's `request`: the client's address, whether the token will be bound to a key,
/// whether the client authenticated (`request.time` is the case's `iat`, else now).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCase {
    /// `request.source_ip`.
    pub source_ip: Option<String>,
    /// `request.sender_constrained`.
    #[serde(default)]
    pub sender_constrained: bool,
    /// `request.client_authenticated`.
    #[serde(default)]
    pub client_authenticated: bool,
}

impl RequestCase {
    /// The situation rules see, at `now`.
    fn situation(&self, now: i64) -> Result<Situation, String> {
        let source_ip = match self.source_ip.as_deref() {
            None => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|_| "request.source_ip is not an IP address".to_owned())?,
            ),
        };
        Ok(Situation {
            source_ip,
            time: now,
            sender_constrained: self.sender_constrained,
            client_authenticated: self.client_authenticated,
        })
    }
}

/// Runs `cases` against `config`; returns the report lines, and `Err` with the report
/// so far at the first mismatch.
pub fn run(config: &Config, cases: &Cases, fallback_now: i64) -> Result<Vec<String>, Vec<String>> {
    let mut lines = Vec::new();
    for (i, case) in cases.cases.iter().enumerate() {
        let label = format!("case {} ({})", i + 1, case.name);
        match check(config, case, fallback_now) {
            Ok(()) => lines.push(format!("ok   {label}")),
            Err(why) => {
                lines.push(format!("FAIL {label}: {why}"));
                lines.push(format!("{} passed, 1 failed", i));
                return Err(lines);
            }
        }
    }
    lines.push(format!("{} passed, 0 failed", cases.cases.len()));
    Ok(lines)
}

/// The case's claims: given, or read from its SAML assertion.
fn claims_of(case: &Case) -> Result<std::borrow::Cow<'_, Map<String, Value>>, String> {
    let Some(text) = &case.assertion else {
        return Ok(std::borrow::Cow::Borrowed(&case.claims));
    };
    if !case.claims.is_empty() {
        return Err("give claims or assertion, not both".into());
    }
    let read = |text: &str| -> Result<_, ferry_verify::saml::SamlError> {
        let xml = ferry_verify::saml::decode_or_xml(text)?;
        let a = ferry_verify::saml::SamlDocument::parse(&xml)?.read_unverified()?;
        Ok(ferry_verify::saml::claims(&a))
    };
    read(text)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| format!("assertion: {e}"))
}

fn check(config: &Config, case: &Case, fallback_now: i64) -> Result<(), String> {
    let claims = claims_of(case)?;
    let claims = claims.as_ref();
    let provider = provider_for(config, case.provider.as_deref(), claims)?;
    let targets: Vec<String> = match (&case.audience, &case.audiences) {
        (Some(a), None) => vec![a.clone()],
        (None, Some(list)) => list.clone(),
        _ => return Err("give exactly one of audience or audiences".into()),
    };
    let scopes = match case.scope.as_deref().map(parse_scope).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return Err(format!("malformed scope: {}", e.description)),
    };
    let now = numeric(claims, "iat").unwrap_or(fallback_now);
    let ask = Ask {
        targets: &targets,
        scopes: &scopes,
        client_id: case.client_id.as_deref(),
        actor: None,
        situation: case.request.situation(now)?,
    };
    let result = decide(
        config,
        provider,
        claims,
        numeric(claims, "exp"),
        now,
        ask,
        None,
    );
    match (case.expect, result) {
        (Expect::Allow, Ok(o)) => allowed_as_expected(case, &o),
        (Expect::Allow, Err(e)) => Err(format!(
            "denied ({} at {}{}: {}), expected allow",
            e.code,
            e.step.as_str(),
            e.rule.map(|r| format!(" by {r}")).unwrap_or_default(),
            e.detail
        )),
        (Expect::Deny, Ok(o)) => Err(format!(
            "allowed by {}, expected deny",
            o.grant.rules.join(", ")
        )),
        (Expect::Deny, Err(e)) => {
            if let Some(rule) = &case.rule
                && e.rule.as_deref() != Some(rule.as_str())
            {
                return Err(format!("denied by {:?}, expected {rule}", e.rule));
            }
            if let Some(step) = &case.step
                && e.step.as_str() != step
            {
                return Err(format!("denied at {}, expected {step}", e.step.as_str()));
            }
            if let Some(code) = &case.error
                && e.code.as_str() != code
            {
                return Err(format!("denied with {}, expected {code}", e.code));
            }
            Ok(())
        }
    }
}

/// An allowed case: the rule, scopes and own claims it expects, if it names them.
fn allowed_as_expected(case: &Case, o: &ferry_core::decision::Outcome) -> Result<(), String> {
    if let Some(rule) = &case.rule
        && !o.grant.rules.contains(rule)
    {
        return Err(format!("allowed by {:?}, expected {rule}", o.grant.rules));
    }
    if let Some(want) = &case.scopes
        && *want != o.grant.scopes
    {
        return Err(format!(
            "granted scopes {:?}, expected {want:?}",
            o.grant.scopes
        ));
    }
    if let Some(want) = &case.token_claims
        && *want != o.grant.claims
    {
        return Err(format!(
            "token claims {}, expected {}",
            Value::Object(o.grant.claims.clone()),
            Value::Object(want.clone())
        ));
    }
    Ok(())
}

/// `ferry test --config CONFIG CASES`: runs the cases, prints the report; success when
/// every case passed.
pub fn command(
    config: &std::path::Path,
    cases: &std::path::Path,
) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context as _;
    use ferry_core::Clock as _;
    let config = crate::load::read_config(config)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let text =
        std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let cases: Cases =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", cases.display()))?;
    let (lines, ok) = match run(&config, &cases, ferry_core::SystemClock.now()) {
        Ok(lines) => (lines, true),
        Err(lines) => (lines, false),
    };
    for l in lines {
        println!("{l}");
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
