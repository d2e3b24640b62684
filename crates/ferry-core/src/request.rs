//! The token request, parsed once from the form body into a typed value (RFC 8693 §2.1,
//! RFC 6749 §3.2). Rules applied here, before anything else looks at the request:
//!
//! 1. Parameters sent without a value are treated as omitted (RFC 6749 §3.1).
//! 2. A single-valued parameter given twice is `invalid_request` (RFC 6749 §3.1);
//!    `audience` and `resource` may repeat (RFC 8693 §2.1).
//! 3. Unknown parameters are ignored (RFC 6749 §3.2).
//! 4. Surrounding ASCII whitespace of `subject_token` is dropped: Google's libraries send
//!    a token file's bytes verbatim, trailing newline included.

use crate::error::{ErrorCode, OAuthError, Step, desc};

pub use crate::token_types::{
    CLIENT_ASSERTION_JWT, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, IssuedTokenType,
    SubjectTokenType, TT_ACCESS_TOKEN, TT_ID_TOKEN, TT_JWT, TT_MTLS, TT_REFERENCE, TT_SAML2,
    TT_SPLIT,
};

/// A parsed token request, one variant per supported grant.
#[derive(Debug, Clone)]
pub enum TokenRequest {
    /// RFC 8693 token exchange.
    TokenExchange(ExchangeRequest),
    /// RFC 7523 §2.1 JWT bearer grant (a service account's own assertion).
    JwtBearer(JwtBearerRequest),
}

/// An RFC 7523 §2.1 request.
#[derive(Clone)]
pub struct JwtBearerRequest {
    /// The assertion.
    pub assertion: String,
    /// `audience` values.
    pub audiences: Vec<String>,
    /// `resource` values.
    pub resources: Vec<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// The requested token type (an extension: RFC 7523 defines none), as in RFC 8693.
    pub requested_token_type: IssuedTokenType,
    /// Google's downscoping `options` (an access boundary), as in token exchange.
    pub options: Option<String>,
}

impl std::fmt::Debug for JwtBearerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtBearerRequest")
            .field("assertion", &"[redacted]")
            .field("audiences", &self.audiences)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl JwtBearerRequest {
    /// The targets: audiences then resources, deduplicated.
    pub fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self.audiences.iter().chain(&self.resources) {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// Client credentials sent in the form (RFC 6749 §2.3.1, RFC 7523 §2.2).
#[derive(Clone, Default)]
pub struct ClientParams {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `client_secret` (client_secret_post).
    pub client_secret: Option<String>,
    /// `client_assertion_type`.
    pub client_assertion_type: Option<String>,
    /// `client_assertion` (private_key_jwt).
    pub client_assertion: Option<String>,
}

impl std::fmt::Debug for ClientParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientParams")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("client_assertion_type", &self.client_assertion_type)
            .field(
                "client_assertion",
                &self.client_assertion.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// An RFC 8693 §2.1 token-exchange request.
#[derive(Clone)]
pub struct ExchangeRequest {
    /// The subject token, whitespace-trimmed.
    pub subject_token: String,
    /// Its declared type.
    pub subject_token_type: SubjectTokenType,
    /// What the client wants back.
    pub requested_token_type: IssuedTokenType,
    /// `audience` values, in order, deduplicated.
    pub audiences: Vec<String>,
    /// `resource` values, in order, deduplicated.
    pub resources: Vec<String>,
    /// Requested scopes, deduplicated; empty when none were requested.
    pub scopes: Vec<String>,
    /// A public client's self-declared `client_id`.
    pub client_id: Option<String>,
    /// RFC 8693 §2.1 `actor_token` (delegation).
    pub actor_token: Option<String>,
    /// Its type.
    pub actor_token_type: Option<SubjectTokenType>,
    /// Google's `options` (JSON), e.g. a Credential Access Boundary.
    pub options: Option<String>,
}

impl std::fmt::Debug for ExchangeRequest {
    // The subject token is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token", &"[redacted]")
            .field("subject_token_type", &self.subject_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field("audiences", &self.audiences)
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl ExchangeRequest {
    /// The targets the client asked for: audiences then resources, deduplicated.
    pub fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.audiences.len() + self.resources.len());
        for t in self.audiences.iter().chain(&self.resources) {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

fn bad(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, Step::Request, description)
}

/// Returns true when the `Content-Type` header value names a urlencoded form, with or
/// without parameters such as `charset`.
pub fn is_form_content_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

const SINGLE: &[&str] = &[
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "scope",
    "actor_token",
    "actor_token_type",
    "client_id",
    "options",
    "assertion",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
    "subject",
    "provider",
];

#[derive(Default)]
struct Params {
    single: Vec<(&'static str, String)>,
    audiences: Vec<String>,
    resources: Vec<String>,
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.single
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn collect(body: &[u8]) -> Result<Params, OAuthError> {
    let mut p = Params::default();
    for (key, value) in crate::form::pairs(body) {
        if value.is_empty() {
            continue; // rule 1
        }
        match key.as_ref() {
            "audience" => push_unique(&mut p.audiences, value.into_owned()),
            "resource" => push_unique(&mut p.resources, value.into_owned()),
            k => {
                if let Some(name) = SINGLE.iter().find(|n| **n == k) {
                    if p.get(name).is_some() {
                        return Err(bad(desc::DUPLICATE_PARAM).detail(format!("duplicate {name}")));
                    }
                    p.single.push((name, value.into_owned()));
                }
            }
        }
    }
    Ok(p)
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Parses a space-delimited `scope` value into distinct scope tokens.
pub fn parse_scope(value: &str) -> Result<Vec<String>, OAuthError> {
    let mut out = Vec::new();
    for s in value.split(' ').filter(|s| !s.is_empty()) {
        if !valid_scope_token(s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                Step::Request,
                desc::BAD_SCOPE,
            ));
        }
        push_unique(&mut out, s.to_owned());
    }
    Ok(out)
}

/// RFC 8707 §2: a resource is an absolute URI without a fragment.
fn valid_resource(r: &str) -> bool {
    let Some((scheme, rest)) = r.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !r.contains('#')
}

fn client_params(p: &Params) -> ClientParams {
    ClientParams {
        client_id: p.get("client_id").map(str::to_owned),
        client_secret: p.get("client_secret").map(str::to_owned),
        client_assertion_type: p.get("client_assertion_type").map(str::to_owned),
        client_assertion: p.get("client_assertion").map(str::to_owned),
    }
}

/// A revocation (RFC 7009) or introspection (RFC 7662) request. Admin revocations may
/// name a `subject`, `provider` or `client_id` instead of a token.
#[derive(Clone)]
pub struct TokenActionRequest {
    /// `token`.
    pub token: Option<String>,
    /// `token_type_hint` (advisory).
    pub token_type_hint: Option<String>,
    /// `subject` (admin revocation).
    pub subject: Option<String>,
    /// `provider` (admin revocation).
    pub provider: Option<String>,
}

impl std::fmt::Debug for TokenActionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenActionRequest")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("token_type_hint", &self.token_type_hint)
            .field("subject", &self.subject)
            .field("provider", &self.provider)
            .finish()
    }
}

/// Parses a revocation or introspection body (already known to be a urlencoded form).
pub fn parse_token_action(body: &[u8]) -> Result<(TokenActionRequest, ClientParams), OAuthError> {
    let p = collect(body)?;
    let client = client_params(&p);
    let s = |k: &str| p.get(k).map(|v| v.trim().to_owned());
    Ok((
        TokenActionRequest {
            token: s("token"),
            token_type_hint: s("token_type_hint"),
            subject: s("subject"),
            provider: s("provider"),
        },
        client,
    ))
}

/// Parses a token request body (already known to be a urlencoded form).
pub fn parse_token_request(body: &[u8]) -> Result<(TokenRequest, ClientParams), OAuthError> {
    let p = collect(body)?;
    let client = client_params(&p);
    let grant = p
        .get("grant_type")
        .ok_or_else(|| bad(desc::MISSING_GRANT_TYPE))?;
    let request = match grant {
        GRANT_TOKEN_EXCHANGE => parse_exchange(&p).map(TokenRequest::TokenExchange)?,
        GRANT_JWT_BEARER => parse_jwt_bearer(&p).map(TokenRequest::JwtBearer)?,
        _ => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                Step::Request,
                desc::UNSUPPORTED_GRANT,
            ));
        }
    };
    Ok((request, client))
}

/// `requested_token_type`: an access token (the default), a JWT, a reference handle or a
/// split token.
fn requested_type(p: &Params) -> Result<IssuedTokenType, OAuthError> {
    match p.get("requested_token_type") {
        None | Some(TT_ACCESS_TOKEN) => Ok(IssuedTokenType::AccessToken),
        Some(TT_JWT) => Ok(IssuedTokenType::Jwt),
        Some(TT_REFERENCE) => Ok(IssuedTokenType::Reference),
        Some(TT_SPLIT) => Ok(IssuedTokenType::Split),
        Some(_) => Err(bad(desc::UNSUPPORTED_REQUESTED_TYPE)),
    }
}

fn parse_jwt_bearer(p: &Params) -> Result<JwtBearerRequest, OAuthError> {
    // RFC 7523 §2.1: exactly one assertion.
    let assertion = p
        .get("assertion")
        .map(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(desc::MISSING_ASSERTION))?
        .to_owned();
    // Delegation needs a subject and an actor; the assertion is both. An actor token is
    // refused rather than ignored, so no caller believes it was recorded.
    if p.get("actor_token").is_some() || p.get("actor_token_type").is_some() {
        return Err(bad(desc::ACTOR_NOT_FOR_GRANT));
    }
    let (audiences, resources, scopes) = targets(p)?;
    Ok(JwtBearerRequest {
        assertion,
        audiences,
        resources,
        scopes,
        requested_token_type: requested_type(p)?,
        options: p.get("options").map(str::to_owned),
    })
}

type Targets = (Vec<String>, Vec<String>, Vec<String>);

fn targets(p: &Params) -> Result<Targets, OAuthError> {
    if let Some(r) = p.resources.iter().find(|r| !valid_resource(r)) {
        return Err(
            OAuthError::new(ErrorCode::InvalidTarget, Step::Request, desc::BAD_RESOURCE).detail(
                format!("resource of {} bytes is not an absolute URI", r.len()),
            ),
        );
    }
    if p.audiences.is_empty() && p.resources.is_empty() {
        return Err(bad(desc::MISSING_TARGET));
    }
    let scopes = match p.get("scope") {
        Some(s) => parse_scope(s)?,
        None => Vec::new(),
    };
    Ok((p.audiences.clone(), p.resources.clone(), scopes))
}

fn parse_exchange(p: &Params) -> Result<ExchangeRequest, OAuthError> {
    let subject_token = p
        .get("subject_token")
        .map(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(desc::MISSING_SUBJECT_TOKEN))?
        .to_owned();
    let subject_token_type = match p.get("subject_token_type") {
        None => return Err(bad(desc::MISSING_SUBJECT_TOKEN_TYPE)),
        Some(TT_JWT) => SubjectTokenType::Jwt,
        Some(TT_ID_TOKEN) => SubjectTokenType::IdToken,
        Some(TT_ACCESS_TOKEN) => SubjectTokenType::AccessToken,
        Some(TT_SAML2) => SubjectTokenType::Saml2,
        Some(TT_MTLS) => SubjectTokenType::Mtls,
        Some(_) => return Err(bad(desc::UNSUPPORTED_SUBJECT_TOKEN_TYPE)),
    };
    let requested_token_type = requested_type(p)?;
    // RFC 8693 §2.1: actor_token_type is REQUIRED with actor_token and MUST NOT come
    // without it. Actors are identities from trusted issuers (`…:jwt`, `…:id_token`).
    let (actor_token, actor_token_type) = match (p.get("actor_token"), p.get("actor_token_type")) {
        (None, None) => (None, None),
        (Some(t), Some(TT_JWT)) => (Some(t.trim().to_owned()), Some(SubjectTokenType::Jwt)),
        (Some(t), Some(TT_ID_TOKEN)) => {
            (Some(t.trim().to_owned()), Some(SubjectTokenType::IdToken))
        }
        _ => return Err(bad(desc::ACTOR_UNSUPPORTED)),
    };
    // Narrowing a Ferry token may keep its audiences (Google's downscoping clients send
    // none).
    let (audiences, resources, scopes) = if subject_token_type == SubjectTokenType::AccessToken
        && p.audiences.is_empty()
        && p.resources.is_empty()
    {
        let scopes = match p.get("scope") {
            Some(s) => parse_scope(s)?,
            None => Vec::new(),
        };
        (Vec::new(), Vec::new(), scopes)
    } else {
        targets(p)?
    };
    Ok(ExchangeRequest {
        subject_token,
        subject_token_type,
        requested_token_type,
        audiences,
        resources,
        scopes,
        client_id: p.get("client_id").map(str::to_owned),
        actor_token,
        actor_token_type,
        options: p.get("options").map(str::to_owned),
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
