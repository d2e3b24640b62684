//! The configuration file as written: every field optional so that validation, not the
//! parser, reports what is missing, all at once and with its path.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub listen_proxy_protocol: Option<bool>,
    pub client_cert_header: Option<RawClientCertHeader>,
    pub data_dir: Option<String>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub outbound: RawOutbound,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub audiences: Vec<RawAudience>,
    pub expose_denial_messages: Option<bool>,
    #[serde(default)]
    pub signing: RawSigning,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub service_accounts: Vec<RawServiceAccount>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    pub max_replay_entries: Option<usize>,
    pub replay: Option<RawReplay>,
    pub revocation: Option<RawRevocation>,
    #[serde(default)]
    pub dpop: RawDpop,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    pub redis: Option<String>,
    pub fail_open: Option<bool>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    pub postgres: Option<RawPostgres>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    pub token_url: Option<String>,
    pub iat_window: Option<String>,
    pub require_nonce: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceAccount {
    pub id: Option<String>,
    pub description: Option<String>,
    pub jwks: Option<RawJwks>,
    pub algorithms: Option<Vec<String>>,
    pub max_assertion_lifetime: Option<String>,
    pub accept_token_endpoint_audience: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: Option<String>,
    pub auth: Option<String>,
    pub secret_sha256: Option<String>,
    pub jwks: Option<RawJwks>,
    pub accept_token_endpoint_audience: Option<bool>,
    pub introspect: Option<bool>,
    pub revocations: Option<bool>,
    pub tls_client_auth_subject_dn: Option<String>,
    pub tls_client_auth_san_dns: Option<String>,
    pub tls_client_auth_san_uri: Option<String>,
    pub tls_client_auth_san_ip: Option<String>,
    pub tls_client_auth_san_email: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    pub algorithm: Option<String>,
    pub rotation_period: Option<String>,
    pub jwks_max_age: Option<String>,
    pub leeway: Option<String>,
    pub keys_dir: Option<String>,
    pub key_encryption_keys: Option<Vec<RawSecretSource>>,
    pub insecure_plaintext_keys: Option<bool>,
    pub hsm: Option<RawHsm>,
    pub postgres: Option<RawPostgres>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: Option<RawSecretSource>,
    pub ca_file: Option<String>,
    pub poll_interval: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretSource {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsm {
    pub module: Option<String>,
    pub token_label: Option<String>,
    pub pin: Option<RawSecretSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub default_ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub min_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub request_timeout: Option<String>,
    pub concurrency: Option<usize>,
    pub rate_per_source: Option<u32>,
    pub rate_global: Option<u32>,
    pub rate_per_provider: Option<u32>,
    pub rate_per_client: Option<u32>,
    pub shutdown_timeout: Option<String>,
    pub shutdown_delay: Option<String>,
    pub max_replay_entries_per_principal: Option<usize>,
    pub replay_clock_skew: Option<String>,
    pub max_reference_tokens: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections_per_source: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_auth: Option<String>,
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub tls: Option<RawTls>,
    pub bearer_token_hashes_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    #[serde(default)]
    pub allow_insecure_origins: Vec<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub max_response_bytes: Option<usize>,
    pub proxy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub min_ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub default_ttl: Option<String>,
    pub refetch_interval: Option<String>,
    pub max_staleness: Option<String>,
    pub error_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiServer {
    pub url: Option<String>,
    pub ca_file: Option<String>,
    pub token_file: Option<String>,
    pub jwks_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub accepted_types: Option<Vec<String>>,
    pub jwks: Option<RawJwks>,
    pub discovery_url: Option<String>,
    pub api_server: Option<RawApiServer>,
    pub ca_file: Option<String>,
    pub allow_private_network: Option<bool>,
    #[serde(default)]
    pub cache: RawCache,
    pub allow_unpinned: Option<bool>,
    pub leeway: Option<String>,
    pub max_token_lifetime: Option<String>,
    pub max_token_age: Option<String>,
    pub cap_lifetime_at_subject_expiry: Option<bool>,
    pub condition: Option<String>,
    pub condition_message: Option<String>,
    pub mapping: Option<RawMapping>,
    pub tenant_claim: Option<String>,
    pub entity_id: Option<String>,
    pub metadata: Option<RawMetadata>,
    pub certificates: Option<Vec<String>>,
    pub recipients: Option<Vec<String>>,
    pub single_use: Option<bool>,
    pub allow_sha1: Option<bool>,
    pub trust_anchors: Option<Vec<String>>,
    pub intermediates: Option<Vec<String>>,
    pub spiffe_trust_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadata {
    pub file: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub file: Option<String>,
    pub inline: Option<serde_json::Value>,
    pub uri: Option<String>,
}

/// A mapping: `subject`, `groups`, `attributes: {NAME: expr}`, or Google's flat keys
/// `google.subject`, `google.groups`, `attribute.NAME`.
pub type RawMapping = BTreeMap<String, RawMappingValue>;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMappingValue {
    Expr(String),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudience {
    pub audience: Option<String>,
    pub default_ttl: Option<String>,
    pub ignore_unknown_scopes: Option<bool>,
    pub message: Option<String>,
    pub require_dpop: Option<bool>,
    pub require_mtls: Option<bool>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// The audience's own claims: name → CEL expression.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub allow: Option<String>,
    pub deny: Option<String>,
    pub message: Option<String>,
    pub require_dpop: Option<bool>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub max_ttl: Option<String>,
}

/// `client_cert_header` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCertHeader {
    pub name: Option<String>,
    pub format: Option<String>,
    pub trusted_peers: Option<Vec<String>>,
}
