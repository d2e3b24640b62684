//! Configuration: parse (YAML into raw structs) → validate (every problem collected with
//! its path, such as `providers[1].audiences: must not be empty`) → prepare (expressions
//! compiled once). Nothing here reads files: the caller passes the text and the
//! directory relative paths are resolved against.

mod raw;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::duration::parse_secs;
use crate::expr::Expr;
use crate::mapping::{MAPPING_VARS, Mapping};
use crate::mint::Lifetimes;
use crate::policy::{Audience, POLICY_VARS, Policy, Rule};
use raw::{RawAudience, RawConfig, RawProvider};

/// Signature algorithms a provider may allow. HMAC and `none` are never among them
/// (RFC 8725 §3.1–3.2): a remote issuer's keys are public.
pub const ALLOWED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// The default algorithm allowlist of a provider.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256"];
/// Default clock leeway for subject tokens, seconds.
pub const DEFAULT_LEEWAY: u64 = 60;
/// Default maximum subject-token lifetime (`exp - iat`), seconds.
pub const DEFAULT_MAX_TOKEN_LIFETIME: u64 = 86_400;
/// Default body limit of `/token`.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Every problem found in a configuration, each with its path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<(String, String)>);

impl ConfigErrors {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push((path.into(), msg.into()));
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (path, msg)) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{path}: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, resolved against the configuration's directory.
    File(PathBuf),
    /// A JWKS given inline, as JSON text.
    Inline(String),
}

/// The kinds of provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Keys from a static JWKS.
    Static,
}

/// A trusted external issuer.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Unique id, used in policies and audit events.
    pub id: String,
    /// Kind.
    pub kind: ProviderKind,
    /// The exact `iss` it matches.
    pub issuer: String,
    /// `aud` values a subject token must carry one of.
    pub audiences: Vec<String>,
    /// Allowed signature algorithms.
    pub algorithms: Vec<String>,
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// Clock leeway, seconds.
    pub leeway: u64,
    /// Longest accepted `exp - iat`, seconds.
    pub max_token_lifetime: u64,
    /// Whether issued tokens end no later than the subject token.
    pub cap_lifetime_at_subject_expiry: bool,
    /// Condition and mapping.
    pub mapping: Mapping,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ferry's own issuer identifier (its public base URL).
    pub issuer: String,
    /// Listen address.
    pub listen: String,
    /// Where Ferry keeps its signing key.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log_level: String,
    /// Issued token lifetimes.
    pub lifetimes: Lifetimes,
    /// Largest accepted `/token` body.
    pub max_body_bytes: usize,
    /// Trusted issuers.
    pub providers: Vec<Provider>,
    /// The audiences Ferry serves, in configuration order.
    pub audience_names: Vec<String>,
    /// Access policy.
    pub policy: Policy,
}

impl Config {
    /// The provider whose issuer is exactly `iss`.
    pub fn provider_for_issuer(&self, iss: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == iss)
    }
}

fn is_loopback_http(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn duration(errs: &mut ConfigErrors, path: &str, value: Option<&String>, default: u64) -> u64 {
    match value {
        None => default,
        Some(v) => parse_secs(v).unwrap_or_else(|e| {
            errs.push(path, e);
            default
        }),
    }
}

fn opt_duration(errs: &mut ConfigErrors, path: &str, value: Option<&String>) -> Option<u64> {
    value.and_then(|v| match parse_secs(v) {
        Ok(s) if s > 0 => Some(s),
        Ok(_) => {
            errs.push(path, "must be greater than zero");
            None
        }
        Err(e) => {
            errs.push(path, e);
            None
        }
    })
}

fn compile(errs: &mut ConfigErrors, path: &str, src: &str, vars: &[&str]) -> Option<Expr> {
    Expr::compile(src, vars)
        .map_err(|e| errs.push(path, e))
        .ok()
}

/// Parses and validates a configuration. `base_dir` resolves relative paths.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push("(file)", e.to_string());
        errs
    })?;
    validate(raw, base_dir)
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();

    let issuer = raw.issuer.clone().unwrap_or_default();
    if issuer.is_empty() {
        errs.push(
            "issuer",
            "is required (Ferry's public base URL, e.g. https://sts.example.com)",
        );
    } else if !(issuer.starts_with("https://") || is_loopback_http(&issuer)) {
        errs.push(
            "issuer",
            "must be an https URL (http is allowed only for 127.0.0.1, localhost or [::1])",
        );
    } else if issuer.ends_with('/') || issuer.contains(['?', '#']) {
        errs.push(
            "issuer",
            "must not end with '/' or carry a query or fragment",
        );
    }

    let t = &raw.tokens;
    let lifetimes = Lifetimes {
        default_ttl: duration(&mut errs, "tokens.default_ttl", t.default_ttl.as_ref(), 900),
        max_ttl: duration(&mut errs, "tokens.max_ttl", t.max_ttl.as_ref(), 3_600),
        min_ttl: duration(&mut errs, "tokens.min_ttl", t.min_ttl.as_ref(), 60),
    };
    if lifetimes.min_ttl == 0 {
        errs.push("tokens.min_ttl", "must be greater than zero");
    }
    if lifetimes.min_ttl > lifetimes.max_ttl {
        errs.push("tokens.min_ttl", "must not exceed tokens.max_ttl");
    }
    if lifetimes.default_ttl > lifetimes.max_ttl {
        errs.push("tokens.default_ttl", "must not exceed tokens.max_ttl");
    }
    let max_body_bytes = raw.limits.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if !(1_024..=1_048_576).contains(&max_body_bytes) {
        errs.push("limits.max_body_bytes", "must be between 1024 and 1048576");
    }

    if raw.providers.is_empty() {
        errs.push(
            "providers",
            "must not be empty: Ferry needs at least one trusted issuer",
        );
    }
    let mut providers = Vec::new();
    let mut ids = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        if let Some(id) = &p.id
            && !ids.insert(id.clone())
        {
            errs.push(format!("{path}.id"), "duplicate provider id");
        }
        if let Some(iss) = &p.issuer {
            if !issuers.insert(iss.clone()) {
                errs.push(
                    format!("{path}.issuer"),
                    "another provider has the same issuer",
                );
            }
            if *iss == issuer {
                errs.push(format!("{path}.issuer"), "must not be Ferry's own issuer");
            }
        }
        if let Some(p) = provider(&mut errs, &path, p, base) {
            providers.push(p);
        }
    }

    if raw.audiences.is_empty() {
        errs.push(
            "audiences",
            "must not be empty: Ferry issues tokens only for configured audiences",
        );
    }
    let mut names = HashSet::new();
    let mut audiences = Vec::new();
    for (i, a) in raw.audiences.iter().enumerate() {
        let path = format!("audiences[{i}]");
        if let Some(a) = audience(&mut errs, &path, a, lifetimes.max_ttl) {
            if !names.insert(a.name.clone()) {
                errs.push(format!("{path}.audience"), "duplicate audience");
            }
            audiences.push(a);
        }
    }

    if !errs.0.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        issuer,
        listen: raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        data_dir: base.join(raw.data_dir.unwrap_or_else(|| "ferry-data".to_owned())),
        log_level: raw.log_level.unwrap_or_else(|| "info".to_owned()),
        lifetimes,
        max_body_bytes,
        providers,
        audience_names: audiences.iter().map(|a| a.name.clone()).collect(),
        policy: Policy::new(audiences),
    })
}

fn provider(errs: &mut ConfigErrors, path: &str, p: &RawProvider, base: &Path) -> Option<Provider> {
    let before = errs.0.len();
    let id = p.id.clone().unwrap_or_default();
    if !valid_id(&id) {
        errs.push(
            format!("{path}.id"),
            "is required: 1-64 characters of a-z, 0-9, '-' or '_'",
        );
    }
    let kind = match p.kind.as_deref() {
        None | Some("static") => ProviderKind::Static,
        Some(_) => {
            errs.push(format!("{path}.kind"), "unknown kind (supported: static)");
            ProviderKind::Static
        }
    };
    let issuer = p.issuer.clone().unwrap_or_default();
    if issuer.is_empty() {
        errs.push(format!("{path}.issuer"), "is required");
    }
    let audiences = p.audiences.clone().unwrap_or_default();
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        errs.push(format!("{path}.audiences"), "must not be empty");
    }
    let algorithms: Vec<String> = match &p.algorithms {
        None => DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            if list.is_empty() {
                errs.push(format!("{path}.algorithms"), "must not be empty");
            }
            for a in list {
                if !ALLOWED_ALGORITHMS.contains(&a.as_str()) {
                    errs.push(
                        format!("{path}.algorithms"),
                        format!(
                            "'{a}' is not allowed (allowed: {})",
                            ALLOWED_ALGORITHMS.join(", ")
                        ),
                    );
                }
            }
            list.clone()
        }
    };
    let jwks = match &p.jwks {
        Some(j) => match (&j.file, &j.inline) {
            (Some(f), None) => Some(JwksSource::File(base.join(f))),
            (None, Some(v)) => Some(JwksSource::Inline(v.to_string())),
            _ => {
                errs.push(format!("{path}.jwks"), "give exactly one of file or inline");
                None
            }
        },
        None => {
            errs.push(format!("{path}.jwks"), "is required for a static provider");
            None
        }
    };
    let leeway = duration(
        errs,
        &format!("{path}.leeway"),
        p.leeway.as_ref(),
        DEFAULT_LEEWAY,
    );
    if leeway > 300 {
        errs.push(format!("{path}.leeway"), "must be at most 5m");
    }
    let max_token_lifetime = duration(
        errs,
        &format!("{path}.max_token_lifetime"),
        p.max_token_lifetime.as_ref(),
        DEFAULT_MAX_TOKEN_LIFETIME,
    );

    let m = p.mapping.as_ref();
    let condition = p
        .condition
        .as_ref()
        .and_then(|c| compile(errs, &format!("{path}.condition"), c, MAPPING_VARS));
    let subject_src = m
        .and_then(|m| m.subject.clone())
        .unwrap_or_else(|| "assertion.sub".to_owned());
    let subject = compile(
        errs,
        &format!("{path}.mapping.subject"),
        &subject_src,
        MAPPING_VARS,
    );
    let groups = m
        .and_then(|m| m.groups.as_ref())
        .and_then(|g| compile(errs, &format!("{path}.mapping.groups"), g, MAPPING_VARS));
    let mut attributes = Vec::new();
    for (name, src) in m.map(|m| &m.attributes).into_iter().flatten() {
        let apath = format!("{path}.mapping.attributes.{name}");
        if !valid_id(name) {
            errs.push(&apath, "attribute names use a-z, 0-9, '-' or '_'");
        }
        if let Some(e) = compile(errs, &apath, src, MAPPING_VARS) {
            attributes.push((name.clone(), e));
        }
    }
    if errs.0.len() > before {
        return None;
    }
    Some(Provider {
        id,
        kind,
        issuer,
        audiences,
        algorithms,
        jwks: jwks?,
        leeway,
        max_token_lifetime,
        cap_lifetime_at_subject_expiry: p.cap_lifetime_at_subject_expiry.unwrap_or(true),
        mapping: Mapping::new(path.to_owned(), condition, subject?, groups, attributes),
    })
}

fn audience(
    errs: &mut ConfigErrors,
    path: &str,
    a: &RawAudience,
    max_ttl: u64,
) -> Option<Audience> {
    let before = errs.0.len();
    let name = a.audience.clone().unwrap_or_default();
    if name.is_empty() {
        errs.push(format!("{path}.audience"), "is required");
    }
    let default_ttl = opt_duration(errs, &format!("{path}.default_ttl"), a.default_ttl.as_ref());
    if default_ttl.is_some_and(|t| t > max_ttl) {
        errs.push(
            format!("{path}.default_ttl"),
            "must not exceed tokens.max_ttl",
        );
    }
    if a.rules.is_empty() {
        errs.push(
            format!("{path}.rules"),
            "must not be empty: with no rule nobody gets this audience",
        );
    }
    let mut rules = Vec::new();
    for (j, r) in a.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{j}]");
        let allow = match &r.allow {
            Some(src) => compile(errs, &format!("{rpath}.allow"), src, POLICY_VARS),
            None => {
                errs.push(format!("{rpath}.allow"), "is required");
                None
            }
        };
        for s in &r.scopes {
            if crate::request::parse_scope(s)
                .map(|v| v.len() != 1)
                .unwrap_or(true)
            {
                errs.push(
                    format!("{rpath}.scopes"),
                    "each scope is one token of printable ASCII without spaces or quotes",
                );
            }
        }
        let max = opt_duration(errs, &format!("{rpath}.max_ttl"), r.max_ttl.as_ref());
        if let Some(allow) = allow {
            rules.push(Rule {
                path: rpath,
                allow,
                scopes: r.scopes.clone(),
                max_ttl: max,
            });
        }
    }
    (errs.0.len() == before).then_some(Audience {
        name,
        default_ttl,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: dev
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { file: keys.json }
    condition: assertion.sub.startsWith('repo:')
    mapping:
      subject: assertion.sub
      attributes: { repository: assertion.repository }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'dev'
        scopes: [deploy]
        max_ttl: 15m
"#;

    #[test]
    fn a_good_config_loads() {
        let c = parse(GOOD, Path::new("/etc/ferry")).unwrap();
        assert_eq!(
            c.providers[0].jwks,
            JwksSource::File("/etc/ferry/keys.json".into())
        );
        assert_eq!(c.providers[0].algorithms, vec!["RS256", "ES256"]);
        assert_eq!(c.data_dir, PathBuf::from("/etc/ferry/ferry-data"));
        assert!(c.provider_for_issuer("https://idp.example.com").is_some());
        assert!(c.provider_for_issuer("https://idp.example.com/").is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let bad = GOOD
            .replace("audiences: [https://ferry.example.com]", "audiences: []")
            .replace("assertion.sub.startsWith", "assertin.sub.startsWith")
            .replace("max_ttl: 15m", "max_ttl: 15x")
            .replace("provider == 'dev'", "provider ==");
        let errs = parse(&bad, Path::new("/")).unwrap_err();
        let paths: Vec<&str> = errs.0.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "providers[0].audiences",
                "providers[0].condition",
                "audiences[0].rules[0].allow",
                "audiences[0].rules[0].max_ttl",
            ],
            "{errs}"
        );
        assert!(
            errs.to_string()
                .contains("providers[0].audiences: must not be empty")
        );
        assert!(errs.to_string().contains("unknown variable 'assertin'"));
    }

    #[test]
    fn unknown_fields_and_hmac_are_refused() {
        assert!(parse(&format!("{GOOD}\nsurprise: 1\n"), Path::new("/")).is_err());
        let hs = GOOD.replace(
            "jwks: { file: keys.json }",
            "jwks: { file: keys.json }\n    algorithms: [HS256]",
        );
        let errs = parse(&hs, Path::new("/")).unwrap_err();
        assert_eq!(errs.0[0].0, "providers[0].algorithms");
    }

    #[test]
    fn issuer_must_be_https_or_loopback() {
        for (iss, ok) in [
            ("https://x.example", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost", true),
            ("http://example.com", false),
            ("http://127.0.0.1.evil.com", false),
            ("https://x.example/", false),
        ] {
            let text = GOOD.replace(
                "issuer: https://ferry.example.com",
                &format!("issuer: {iss}"),
            );
            assert_eq!(parse(&text, Path::new("/")).is_ok(), ok, "{iss}");
        }
    }
}
