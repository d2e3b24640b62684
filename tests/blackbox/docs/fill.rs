//! Turning a configuration example into a file `ferry check` can read: elisions (`…`)
//! replaced by the smallest valid value, a fragment merged into a minimal configuration
//! (its top-level keys replacing the base's), and every file it names — keys, JWKS,
//! certificates, PINs — generated as a throwaway file in the test's directory (absolute
//! paths moved under it). Secrets given as `{env: …}` stay unset, PostgreSQL connection
//! strings unwritten: `ferry check` then notes what it could not reach, and reaches
//! nothing.

use std::path::Path;

use serde_json::{Map, Value};

/// The configuration a fragment is merged into.
pub const BASE: &str = r#"{"issuer": "https://ferry.example.com",
 "providers": [{"id": "dev", "issuer": "https://idp.example.com",
                "audiences": ["https://ferry.example.com"], "jwks": {"file": "keys.json"}}],
 "audiences": [{"audience": "https://deploy.example.com", "rules": [{"allow": "true"}]}]}"#;

/// The key-encryption key the checks run with (as the black-box tests).
pub const KEK: &str = crate::harness::TEST_KEK;

/// Throwaway key material, made once per test.
pub struct Material {
    /// A JWK Set with an RSA and an EC key.
    pub jwks: String,
    /// A self-signed CA certificate (PEM) for `localhost`, and its key.
    pub cert_pem: String,
    pub key_pem: String,
}

impl Material {
    pub fn new() -> Self {
        let keys = [
            ferry_testkit::TestKey::rsa("docs-rsa"),
            ferry_testkit::TestKey::ec("docs-ec"),
        ];
        let jwks = ferry_testkit::keys::jwks(&[&keys[0], &keys[1]]).to_string();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            jwks,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The base64 lines of the certificate, between its PEM armour.
    fn cert_body(&self) -> Vec<&str> {
        self.cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }

    /// SAML IdP metadata holding the certificate, for the entity `entity_id`.
    fn saml_metadata(&self, entity_id: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>"#,
            self.cert_body().concat()
        )
    }
}

/// The example with its elisions filled; `Err` names an elision this test cannot fill.
pub fn elisions(text: &str, m: &Material) -> Result<String, String> {
    let hash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    let text = text
        .replace("secret_sha256: …", &format!("secret_sha256: {hash}"))
        .replace("rules: [ … ]", "rules: [{allow: \"true\"}]")
        .replace("{\"keys\": [ … ]}", &m.jwks);
    // An inline PEM certificate whose body is elided: the generated one, same indentation.
    let mut out = Vec::new();
    let mut in_pem = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("-----BEGIN CERTIFICATE-----") {
            in_pem = Some(&line[..line.len() - trimmed.len()]);
            out.push(line.to_owned());
            for l in m.cert_body() {
                out.push(format!("{}{l}", in_pem.unwrap_or_default()));
            }
            continue;
        }
        if trimmed.starts_with("-----END CERTIFICATE-----") {
            in_pem = None;
        }
        if in_pem.is_none() {
            out.push(line.to_owned());
        }
    }
    for line in &out {
        let code = line.split(" #").next().unwrap_or_default();
        if code.contains('…') {
            return Err(format!(
                "`{}`: an elision the documentation test cannot fill (tests/blackbox/docs/fill.rs)",
                line.trim()
            ));
        }
    }
    Ok(out.join("\n") + "\n")
}

/// The configuration `ferry check` reads for this example: the example itself when it
/// names an `issuer`, else the base with the example's top-level keys.
pub fn merged(example: Value) -> Result<Value, String> {
    let Value::Object(example) = example else {
        return Err("is not a YAML mapping".into());
    };
    if example.contains_key("issuer") {
        return Ok(Value::Object(example));
    }
    let mut config: Map<String, Value> = serde_json::from_str(BASE).unwrap();
    config.extend(example);
    Ok(Value::Object(config))
}

/// Writes every file `config` names into `dir` (paths rewritten under it), and the base's
/// `keys.json`.
pub fn files(config: &mut Value, dir: &Path, m: &Material) {
    std::fs::write(dir.join("keys.json"), &m.jwks).unwrap();
    walk(config, &[], dir, m);
}

fn write(dir: &Path, value: &mut Value, contents: Option<&str>) {
    let Value::String(s) = value else { return };
    let path = match s.strip_prefix('/') {
        Some(rel) => dir.join("root").join(rel),
        None => dir.join(s.as_str()),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    if let Some(c) = contents {
        std::fs::write(&path, c).unwrap();
    }
    *s = path.display().to_string();
}

/// `keys`: the object keys leading to `value` (an array's items share its key).
fn walk(value: &mut Value, keys: &[&str], dir: &Path, m: &Material) {
    match value {
        Value::Object(map) => {
            // A SAML provider's metadata file names the provider's entity id.
            let entity = map
                .get("entity_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let (Some(entity), Some(Value::Object(md))) = (&entity, map.get_mut("metadata"))
                && let Some(file) = md.get_mut("file")
            {
                write(dir, file, Some(&m.saml_metadata(entity)));
            }
            for (k, v) in map.iter_mut() {
                let mut path = keys.to_vec();
                path.push(k.as_str());
                walk(v, &path, dir, m);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(v, keys, dir, m);
            }
        }
        Value::String(_) => leaf(value, keys, dir, m),
        _ => {}
    }
}

fn leaf(value: &mut Value, keys: &[&str], dir: &Path, m: &Material) {
    let Some((&key, up)) = keys.split_last() else {
        return;
    };
    let parent = up.last().copied().unwrap_or_default();
    let contents: Option<&str> = match (parent, key) {
        ("jwks", "file") => Some(&m.jwks),
        // Written above, with the provider's entity id.
        ("metadata", "file") => return,
        ("key_encryption_keys", "file") => Some(KEK),
        ("pin", "file") => Some("1234"),
        ("audit", "file") => None,
        (_, "token_file") => Some("a-bearer-token"),
        // Connection strings stay unwritten: `ferry check` would try to connect.
        ("url", "file") => None,
        (_, "bearer_token_hashes_file") => {
            Some("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n")
        }
        (_, "key_file") => Some(&m.key_pem),
        (_, k)
            if k.ends_with("ca_file")
                || k == "cert_file"
                || k == "trust_anchors"
                || k == "intermediates" =>
        {
            Some(&m.cert_pem)
        }
        (_, "keys_dir" | "data_dir" | "module") => None,
        _ => return,
    };
    write(dir, value, contents);
}
