//! What a grant produces: the verified subject of a token request, and the request as
//! every grant sees it.

use ferry_core::binding::Binding;
use ferry_core::mapping::Principal;
use ferry_core::narrow::Parent;
use ferry_core::request::{ExchangeRequest, IssuedTokenType, JwtBearerRequest, SubjectTokenType};
use ferry_token::MayAct;

/// Which grant turns the request's credential into a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// RFC 8693 with a provider's token (or a service account's own assertion).
    ProviderToken,
    /// RFC 8693 with a Ferry access token (or reference handle) to narrow.
    FerryToken,
    /// RFC 7523 §2.1: a service account's own assertion.
    JwtBearer,
    /// RFC 8693 with a SAML 2.0 assertion from a `kind: saml` provider.
    Saml,
    /// RFC 8693 with an X.509 chain (`…:mtls`) for a `kind: x509` provider.
    X509,
}

impl GrantKind {
    /// The grant's name in audit events.
    pub fn audit_name(self) -> &'static str {
        match self {
            Self::ProviderToken | Self::FerryToken | Self::Saml | Self::X509 => "token-exchange",
            Self::JwtBearer => "jwt-bearer",
        }
    }
}

/// A token request, the same shape for every grant.
#[derive(Clone)]
pub struct Ask {
    /// The grant.
    pub grant: GrantKind,
    /// The subject token or assertion.
    pub credential: String,
    /// The actor token (RFC 8693 §2.1), token exchange only.
    pub actor_token: Option<String>,
    /// Requested audiences and resources.
    pub targets: Vec<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// The requested token type.
    pub issued: IssuedTokenType,
    /// Google's downscoping `options` (an added access boundary).
    pub options: Option<String>,
    /// The authenticated client, when one was named.
    pub client_id: Option<String>,
    /// The client certificate the request came with (its TLS connection's, or one a
    /// trusted proxy forwarded).
    pub certificate: Option<std::sync::Arc<crate::client_cert::ClientChain>>,
}

impl std::fmt::Debug for Ask {
    // The credentials are secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("grant", &self.grant)
            .field("targets", &self.targets)
            .field("scopes", &self.scopes)
            .field("client_id", &self.client_id)
            .field(
                "certificate",
                &self.certificate.as_ref().map(|c| c.thumbprint().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

impl Ask {
    /// A token-exchange request.
    pub fn exchange(req: ExchangeRequest, client_id: Option<String>) -> Self {
        let targets = req.targets();
        Self {
            grant: match req.subject_token_type {
                SubjectTokenType::AccessToken => GrantKind::FerryToken,
                SubjectTokenType::Saml2 => GrantKind::Saml,
                SubjectTokenType::Mtls => GrantKind::X509,
                SubjectTokenType::Jwt | SubjectTokenType::IdToken => GrantKind::ProviderToken,
            },
            credential: req.subject_token,
            actor_token: req.actor_token,
            targets,
            scopes: req.scopes,
            issued: req.requested_token_type,
            options: req.options,
            client_id,
            certificate: None,
        }
    }

    /// A JWT-bearer request.
    pub fn jwt_bearer(req: JwtBearerRequest, client_id: Option<String>) -> Self {
        let targets = req.targets();
        Self {
            grant: GrantKind::JwtBearer,
            credential: req.assertion,
            actor_token: None,
            targets,
            scopes: req.scopes,
            issued: req.requested_token_type,
            options: req.options,
            client_id,
            certificate: None,
        }
    }
}

/// Whose rules decide what the subject gets.
#[derive(Debug, Clone)]
pub enum Policy {
    /// The audiences' access rules.
    Rules,
    /// Narrower than this parent (a Ferry token being narrowed), for these audiences
    /// (those asked for, else the parent's).
    Narrower {
        /// The parent.
        parent: Parent,
        /// The audiences the child is for.
        targets: Vec<String>,
    },
}

/// A verified subject: everything the shared steps need, and nothing a grant could use to
/// skip one.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Who the token will be about, with the `act` the subject token carried
    /// (`subject_act`) and, for a narrowed token, its `ancestors`.
    pub principal: Principal,
    /// The provider whose bucket pays for the request.
    pub payer: String,
    /// The expiry that caps the issued lifetime, when there is one.
    pub exp: Option<i64>,
    /// Whether the issued lifetime stops at `exp`.
    pub cap_at_exp: bool,
    /// The key the subject token is bound to.
    pub binding: Binding,
    /// Who may act for the subject.
    pub may_act: Option<MayAct>,
    /// Whose rules decide.
    pub policy: Policy,
    /// The issued token's `client_id`.
    pub client_id: String,
    /// The token type to issue.
    pub issued: IssuedTokenType,
}

impl Subject {
    /// The audiences the token is for: those asked for, or, narrowing, the parent's when
    /// none were.
    pub fn targets<'a>(&'a self, ask: &'a Ask) -> &'a [String] {
        match &self.policy {
            Policy::Rules => &ask.targets,
            Policy::Narrower { targets, .. } => targets,
        }
    }
}

/// What a grant learnt about the credential, for the audit event, whatever the outcome.
#[derive(Debug, Default)]
pub struct Trail {
    /// The provider that verified (or would have verified) the credential.
    pub provider: Option<String>,
    /// The credential's issuer, once known to be a configured one.
    pub original_issuer: Option<String>,
    /// The credential's subject, bounded.
    pub original_subject: Option<String>,
}
