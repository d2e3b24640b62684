//! Every configuration example in the README parses and validates: each ```yaml block
//! whose keys are Ferry's is merged into a minimal configuration (its top-level keys
//! replacing the base's) and loaded as `ferry serve` would load it. Elisions (`…`) are
//! replaced by the smallest valid value first. Other YAML (a GitHub workflow, Kubernetes
//! manifests, `ferry test` cases) is left alone. The black-box `docs` tests go further
//! (`ferry check` on every block, its files generated; shell blocks run or marked).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::{Map, Value};

const README: &str = include_str!("../../../README.md");

const BASE: &str = r#"{"issuer": "https://ferry.example.com",
 "providers": [{"id": "dev", "issuer": "https://idp.example.com",
                "audiences": ["https://ferry.example.com"], "jwks": {"file": "keys.json"}}],
 "audiences": [{"audience": "https://deploy.example.com", "rules": [{"allow": "true"}]}]}"#;

/// Ferry's top-level configuration keys: a block starting with another is not Ferry's.
const FERRY_KEYS: &[&str] = &[
    "issuer",
    "providers",
    "audiences",
    "dpop",
    "signing",
    "replay",
    "service_accounts",
    "clients",
    "limits",
    "tokens",
    "admin",
    "outbound",
    "tls",
    "audit",
    "listen",
    "trusted_proxies",
    "listen_proxy_protocol",
    "client_cert_header",
    "data_dir",
    "revocation",
    "metrics",
];

fn blocks() -> Vec<&'static str> {
    README
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(b, _)| b))
        .collect()
}

fn filled(block: &str) -> String {
    block
        .replace(
            "secret_sha256: …",
            "secret_sha256: 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
        )
        .replace("rules: [ … ]", "rules: [{allow: \"true\"}]")
        .replace("{\"keys\": [ … ]}", "{\"keys\": []}")
}

#[test]
fn every_configuration_example_in_the_readme_loads() {
    let mut checked = 0;
    for block in blocks() {
        let first = block
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap_or_default();
        let key = first.split(':').next().unwrap_or_default();
        if !FERRY_KEYS.contains(&key) {
            continue;
        }
        let text = filled(block);
        let fragment: Map<String, Value> = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("README example does not parse as YAML: {e}\n{block}"));
        let mut config: Map<String, Value> = serde_json::from_str(BASE).unwrap();
        config.extend(fragment);
        let merged = serde_json::to_string(&config).unwrap();
        if let Err(e) = ferry_core::config::parse(&merged, Path::new("/")) {
            panic!("README example does not load: {e}\n{block}");
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} examples found");
}
