//! The shutdown settings: their defaults, their parsing like every other duration, and
//! their bounds; and the bound on an issuer cache's `error_ttl` (no refresh storms).

use std::path::Path;

use super::{Limits, PER_CORE_EXCHANGES, derived_global_rate, global_rate_warning};
use crate::config::parse;

/// A minimal configuration that loads (shared by the configuration's tests).
pub(in crate::config) const BASE: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: dev
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { file: keys.json }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'dev'
"#;

fn limits(set: &str) -> Result<Limits, Vec<String>> {
    parse(&format!("{BASE}limits: {{ {set} }}\n"), Path::new("/"))
        .map(|c| c.limits)
        .map_err(|e| e.0.into_iter().map(|(p, _)| p).collect())
}

#[test]
fn shutdown_delay_defaults_to_five_seconds_and_zero_disables_it() {
    let c = parse(BASE, Path::new("/")).unwrap();
    assert_eq!(
        (c.limits.shutdown_delay, c.limits.shutdown_timeout),
        (5, 20)
    );
    assert_eq!(limits("shutdown_delay: 0s").unwrap().shutdown_delay, 0);
    assert_eq!(limits("shutdown_delay: 0").unwrap().shutdown_delay, 0);
    assert_eq!(limits("shutdown_delay: 1m30s").unwrap().shutdown_delay, 90);
    assert_eq!(limits("shutdown_delay: 5m").unwrap().shutdown_delay, 300);
    // Refused, each beside its accepted twin above.
    assert_eq!(
        limits("shutdown_delay: 5m1s").unwrap_err(),
        vec!["limits.shutdown_delay"]
    );
    assert_eq!(
        limits("shutdown_delay: 5x").unwrap_err(),
        vec!["limits.shutdown_delay"]
    );
}

#[test]
fn an_issuer_cache_must_remember_a_failure_for_some_time() {
    let with = |ttl: &str| {
        BASE.replace(
            "    jwks: { file: keys.json }\n",
            &format!("    cache: {{ error_ttl: {ttl} }}\n"),
        )
    };
    let c = parse(&with("1s"), Path::new("/")).unwrap();
    assert_eq!(c.providers[0].cache.error_ttl.as_secs(), 1);
    let err = parse(&with("0s"), Path::new("/")).unwrap_err();
    let paths: Vec<String> = err.0.into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, vec!["providers[0].cache.error_ttl"]);
}

#[test]
fn the_default_global_rate_is_what_the_machine_serves() {
    assert_eq!(derived_global_rate(1), PER_CORE_EXCHANGES);
    assert_eq!(derived_global_rate(8), 8 * PER_CORE_EXCHANGES);
    assert_eq!(derived_global_rate(0), PER_CORE_EXCHANGES);
    assert_eq!(derived_global_rate(usize::MAX), u32::MAX);
    // Below the derived rate: a warning naming the figures; at or above: none.
    let w = global_rate_warning(2_000, 2).unwrap();
    assert!(w.contains("2 cores × 26000/s = 52000/s"), "{w}");
    assert_eq!(global_rate_warning(52_000, 2), None);
    assert_eq!(global_rate_warning(100_000, 2), None);
}

#[test]
fn the_metrics_listener_must_differ_from_the_public_and_admin_listeners() {
    let paths = |set: &str| -> Result<Option<String>, Vec<String>> {
        parse(&format!("{BASE}{set}\n"), Path::new("/"))
            .map(|c| c.metrics.listen)
            .map_err(|e| e.0.into_iter().map(|(p, _)| p).collect())
    };
    // Off by default, and `off` is off.
    assert_eq!(paths(""), Ok(None));
    assert_eq!(paths("metrics: { listen: \"off\" }"), Ok(None));
    // Accepted: a port of its own, off loopback too (no TLS or bearer needed).
    assert_eq!(
        paths("metrics: { listen: \"0.0.0.0:9464\" }"),
        Ok(Some("0.0.0.0:9464".into()))
    );
    assert_eq!(
        paths(
            "listen: 0.0.0.0:8080\nadmin: { listen: \"127.0.0.1:9090\" }\nmetrics: { listen: \"10.0.0.5:9464\" }"
        ),
        Ok(Some("10.0.0.5:9464".into()))
    );
    // Port 0 is the kernel's pick: never the same socket.
    assert!(paths("listen: 127.0.0.1:0\nmetrics: { listen: \"127.0.0.1:0\" }").is_ok());
    // Refused, each beside an accepted twin above: the public listener's socket (the
    // same address, or a wildcard on its port), the admin listener's.
    for set in [
        "listen: 0.0.0.0:8080\nmetrics: { listen: \"0.0.0.0:8080\" }",
        "listen: 0.0.0.0:8080\nmetrics: { listen: \"10.0.0.5:8080\" }",
        "listen: 10.0.0.5:8080\nmetrics: { listen: \"0.0.0.0:8080\" }",
        "metrics: { listen: \"127.0.0.1:8080\" }",
        "metrics: { listen: \"127.0.0.1:9090\" }",
        "metrics: { listen: \"[::]:9090\" }",
        "admin: { listen: \"localhost:9464\" }\nmetrics: { listen: \"localhost:9464\" }",
    ] {
        assert_eq!(paths(set), Err(vec!["metrics.listen".to_owned()]), "{set}");
    }
    // The admin listener may not take the public one's socket either.
    assert_eq!(
        paths("listen: 127.0.0.1:9090"),
        Err(vec!["admin.listen".to_owned()])
    );
}

#[test]
fn the_google_path_of_the_token_endpoint_sits_beside_the_configured_one() {
    let v1 = |extra: &str| {
        parse(&format!("{BASE}{extra}"), Path::new("/"))
            .map(|c| (c.dpop.token_url, c.dpop.v1_token_url))
            .unwrap()
    };
    assert_eq!(
        v1(""),
        (
            "https://ferry.example.com/token".to_owned(),
            "https://ferry.example.com/v1/token".to_owned()
        )
    );
    // Behind a proxy under a path prefix, /v1/token is under the same prefix.
    assert_eq!(
        v1("dpop: { token_url: https://example.com/sts/token }\n").1,
        "https://example.com/sts/v1/token"
    );
}
