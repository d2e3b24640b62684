//! What each fuzz target runs, in one place: the cargo-fuzz targets under `fuzz/` call
//! these, and `cargo test -p ferry-fuzz` replays every file of `fuzz/corpus/<target>` and
//! `fuzz/artifacts/<target>` through them on the stable toolchain. Each must return
//! (refusing the input is fine) and never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::OnceLock;

use ferry_core::decision::{Ask, decide};
use ferry_verify::{Algorithm, KeySet, Rules};
use serde_json::Value;

/// A target's body.
pub type Target = fn(&[u8]);

/// The targets, by name (the directory names under `fuzz/corpus`).
pub const TARGETS: &[(&str, Target)] = &[
    ("token", token),
    ("form", form),
    ("config", config),
    ("claims", claims),
    ("saml", saml),
];

/// A fixed key set: an RSA and a P-256 key (public halves only).
const JWKS: &str = r#"{"keys":[
 {"kty":"EC","crv":"P-256","kid":"e1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
 {"kty":"RSA","kid":"r1","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
]}"#;

fn keys() -> &'static KeySet {
    static K: OnceLock<KeySet> = OnceLock::new();
    K.get_or_init(|| {
        KeySet::from_jwks(JWKS.as_bytes(), &[Algorithm::RS256, Algorithm::ES256])
            .unwrap()
            .0
    })
}

/// A token from anywhere: peeked, verified (it never verifies; every check before the
/// signature and the parsing after it run).
pub fn token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = ferry_verify::parse(s) else {
        return;
    };
    let _ = t.issuer();
    let rules = Rules::new("https://idp.test", vec!["https://ferry.test".into()])
        .set_allowed_algorithms([Algorithm::RS256, Algorithm::ES256]);
    let _ = t.verify_with_keys(&rules, keys(), 1_700_000_000);
}

/// The signing certificates of the SAML corpus's identity provider (P-256 and RSA):
/// the corpus's signed documents verify with them, so mutations reach every check.
const SAML_CERTS: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS+gAwIBAgIUDLf6PwEx7/VPCYz/6o2jE4Ppjs0wCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPZnogU0FNTCBzaWduaW5nMB4XDTI2MTIwNzAxMTgzNVoXDTM2
MTIwNDAxMTgzNVowGjEYMBYGA1UEAwwPZnogU0FNTCBzaWduaW5nMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEcSIl7t2OcqhP/4ZXOp5a4q8nkkQNWrcmPTBF1NF/
5CmTzIckfD7shLS6LCCLaRTJK9MCBHVwKCrDa8oAMwN076NTMFEwHQYDVR0OBBYE
FNpNRI21V/Pga0pc1sUHOecBRLdWMB8GA1UdIwQYMBaAFNpNRI21V/Pga0pc1sUH
OecBRLdWMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgPxXaCCGX
/XsZ5aMQiwDWBn9s99tCpH3Xip8dqbCP4/8CIDcgq18yW1VmQWRebXkr0kjapCUp
rIBLBBCUF5PptQWu
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIDFzCCAf+gAwIBAgIUV/4e4Fr3H4kCLwJmqmsfY+WQCnkwDQYJKoZIhvcNAQEL
BQAwGzEZMBcGA1UEAwwQZnpyIFNBTUwgc2lnbmluZzAeFw0yNjEyMDcwMTE4MzVa
Fw0zNjEyMDQwMTE4MzVaMBsxGTAXBgNVBAMMEGZ6ciBTQU1MIHNpZ25pbmcwggEi
MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDDedGvrYZG4R+84lNunPCgQllJ
2GoRyAjE0QHX++x/OYxz80T04i5/d3UxhVw8Eaq1Qvq0RMf1bcdxcsJ/XovDOe8f
JbunE1UigA9Df4uA0PIzg8kYQ5v8Ru0ssnDA8+/0P38HmBHO+1+rz7vkEnxUsBBL
cwXPWAXFhoAvsA/JtX0lMgFh4HiDEBr/rFmAfjohdtuN/SyngJYSWEMBKIp+aJYw
//i6r3JyCfC3wFjWS6Sr3SUj4kLKg5d/wXIr7onS/2xRMP0vupgiyFY6xXq/WV1Y
q8FfAP8JOoD7biVy4GKAFd4O19mdIMyMOT96BvQN94rNTyBy0E9GZU2dIN65AgMB
AAGjUzBRMB0GA1UdDgQWBBTrAKX3fI6QgodLs9/jneGRUS/T7jAfBgNVHSMEGDAW
gBTrAKX3fI6QgodLs9/jneGRUS/T7jAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3
DQEBCwUAA4IBAQCbTcMYF3AZ8n098d1yZgrtOTOlPADN/xkWOoX+wPc4Q0BtkUmz
1r4UjLxk1EUoya4eORxBJi6pz73/xUoO6dBxWajCg7N6/ea7sAW51Gtp43pkif32
qjDI4qLfQeCMcy15fH4+4F7SJ7pTnht/OmFrXCfcqNsBpFkqe6YSWvgwbq1qE4j7
4pQR3gMT41D5DEVQT/6KePTbky8eLUsNvAQjIZO8BBdC2qIPSmct6THF9aXwcBei
KKD3xuPYrJgFv30ksFHBQOO/2YyeQWyJ5bxNHWH7TIaMY8yZH3kUSSMm+0UOit19
uZk/4kVkAUgd8WIpO6zrCsmUlajOO58NgR2Q
-----END CERTIFICATE-----";

/// A SAML document: decoded as a token, parsed with its limits, its shape checked,
/// every signature verified and the assertion read and checked (never accepted: the
/// times are far past), and read unverified as `ferry test` does.
pub fn saml(data: &[u8]) {
    use ferry_verify::saml::{self, SamlDocument, SamlPolicy};
    static CERTS: OnceLock<Vec<saml::Certificate>> = OnceLock::new();
    let certs = CERTS.get_or_init(|| saml::from_pem(SAML_CERTS.as_bytes()).unwrap());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = saml::decode(text);
    let Ok(doc) = SamlDocument::parse(text) else {
        return;
    };
    let _ = doc.issuer();
    let _ = doc.read_unverified();
    let audiences = ["https://ferry.test/sp".to_owned()];
    let recipients = ["https://ferry.test/token".to_owned()];
    let policy = SamlPolicy {
        entity_id: "https://idp.fuzz.test",
        audiences: &audiences,
        recipients: &recipients,
        leeway: 60,
        allow_sha1: true,
        max_lifetime: 86_400,
    };
    let _ = doc.verify_with(certs, &policy, 1_700_000_000);
}

/// A `/token`, `/revoke` or `/introspect` body.
pub fn form(data: &[u8]) {
    // Ferry's own decoder must agree with the URL standard's parser on every input.
    let ours: Vec<_> = ferry_core::form::pairs(data).collect();
    let reference: Vec<_> = form_urlencoded::parse(data).collect();
    assert_eq!(
        ours, reference,
        "form::pairs disagrees with form_urlencoded"
    );
    let _ = ferry_core::request::parse_token_request(data);
    let _ = ferry_core::request::parse_token_action(data);
}

/// A configuration file.
pub fn config(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ferry_core::config::parse(s, Path::new("/nonexistent"));
    }
}

const CONFIG: &str = r#"
issuer: https://ferry.test
providers:
  - id: gh
    issuer: https://idp.test
    audiences: [https://ferry.test]
    jwks: { inline: {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]} }
    condition: "assertion.repository_owner_id == '65' && assertion.ref.matches('^refs/(heads|tags)/') && size(assertion.groups) < 5"
    mapping:
      subject: "'repo:' + assertion.repository + ':' + assertion.ref"
      groups: "has(assertion.groups) ? assertion.groups : []"
      attributes:
        repository: assertion.repository
        env: "has(assertion.environment) ? assertion.environment : 'none'"
        first: "assertion.repository.split('/')[0]"
audiences:
  - audience: https://deploy.test
    rules:
      - deny: subject.endsWith('[bot]')
      - allow: attribute.repository.startsWith('acme/') && 'admins' in groups
        scopes: [deploy]
"#;

/// Hostile claims through a condition, a mapping and a policy.
pub fn claims(data: &[u8]) {
    static C: OnceLock<ferry_core::config::Config> = OnceLock::new();
    let config = C.get_or_init(|| ferry_core::config::parse(CONFIG, Path::new("/")).unwrap());
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(provider) = config.providers.first() else {
        return;
    };
    let targets = vec!["https://deploy.test".to_owned()];
    let scopes = vec!["deploy".to_owned()];
    let ask = Ask {
        targets: &targets,
        scopes: &scopes,
        client_id: None,
        actor: None,
        situation: ferry_core::policy::Situation::default(),
    };
    let _ = decide(
        config,
        provider,
        &claims,
        Some(1_700_000_300),
        1_700_000_000,
        ask,
        None,
    );
}

/// Every file of `dir` (none is fine).
pub fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every committed corpus and crash input on the stable toolchain.
    #[test]
    fn every_corpus_and_crash_input_replays_without_a_panic() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut seen = 0;
        for (name, run) in TARGETS {
            let corpus = inputs(&fuzz.join("corpus").join(name));
            assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
            for (path, data) in corpus
                .iter()
                .chain(inputs(&fuzz.join("artifacts").join(name)).iter())
            {
                let r = std::panic::catch_unwind(|| run(data));
                assert!(r.is_ok(), "{name}: {path} panics");
                seen += 1;
            }
        }
        assert!(seen >= 8, "{seen} inputs");
    }
}
