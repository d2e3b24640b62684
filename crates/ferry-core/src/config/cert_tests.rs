//! Configuration of client certificates: a feature that needs one warns when none can
//! arrive.

use std::path::Path;

use super::parse;

const MTLS: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: idp
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { inline: {"keys": []} }
audiences:
  - audience: https://deploy.example.com
    require_mtls: true
    rules:
      - allow: provider == 'idp'
"#;

#[test]
fn a_feature_that_needs_a_client_certificate_warns_when_none_can_arrive() {
    let c = parse(MTLS, Path::new("/")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains(
            "audience https://deploy.example.com (require_mtls) needs a client certificate"
        )),
        "{:?}",
        c.warnings
    );
    // Twin: a header from trusted peers can deliver one.
    let header =
        format!("client_cert_header: {{ format: xfcc, trusted_peers: [10.0.0.0/8] }}\n{MTLS}");
    let c = parse(&header, Path::new("/")).unwrap();
    assert!(
        c.warnings
            .iter()
            .all(|w| !w.contains("needs a client certificate")),
        "{:?}",
        c.warnings
    );
}
