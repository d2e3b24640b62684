//! Outbound HTTP clients, hardened under the configured outbound policy.

use std::time::Duration;

use ferry_core::config::Config;
use ferry_verify::net::{ClientSettings, Http, OutboundPolicy};

/// A hardened HTTP client under the configured outbound policy, trusting `trusted`
/// origins besides the insecure opt-ins.
pub fn http_for(config: &Config, trusted: &[String]) -> Result<Http, String> {
    let policy = OutboundPolicy::new(&config.outbound.allow_insecure_origins, trusted)
        .map_err(|e| e.to_string())?;
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(config.outbound.connect_timeout),
        timeout: Duration::from_secs(config.outbound.timeout),
        max_response_bytes: config.outbound.max_response_bytes,
        extra_roots_pem: None,
    };
    Http::new(policy, &settings)
}
