//! The SAML side: a signing key and self-signed certificate kept in the data directory
//! (so assertions keep verifying across restarts), the IdP metadata naming them, and
//! signed assertions (or responses holding one) minted for any subject asked for.

use std::path::Path;

use anyhow::{Context, bail};
use ferry_testkit::saml::{SamlIdp, SamlKey, token};

use crate::files;

const KEY_FILE: &str = "saml-key.p8";
const CERT_FILE: &str = "saml-cert.der";
/// The IdP metadata (public): what a `kind: saml` provider's `metadata: {file}` names.
pub const METADATA_FILE: &str = "saml-metadata.xml";
/// The signing certificate as PEM (public): for a provider's `certificates`.
pub const CERT_PEM_FILE: &str = "saml-cert.pem";
/// Where `serve` answers with the metadata, under its issuer.
pub const METADATA_PATH: &str = "/saml/metadata";

/// The SAML entity id of the issuer `issuer`.
pub fn entity_id(issuer: &str) -> String {
    format!("{}/saml", issuer.trim_end_matches('/'))
}

/// The SAML identity in `dir` under `entity_id`, created on first use (RSA 2048,
/// rsa-sha256: what most identity providers sign with).
pub fn load_or_create(dir: &Path, entity_id: &str) -> anyhow::Result<SamlIdp> {
    let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
    match (std::fs::read(&key_path), std::fs::read(&cert_path)) {
        (Ok(key), Ok(cert)) => return SamlIdp::from_pkcs8(entity_id, &key, &cert),
        (Err(_), Err(_)) => {}
        _ => bail!(
            "{} holds only one of {KEY_FILE} and {CERT_FILE}: remove both to create a new SAML key",
            dir.display()
        ),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let idp = SamlIdp::new(entity_id, SamlKey::Rsa)?;
    files::write_private(&key_path, &idp.key_der)?;
    std::fs::write(&cert_path, &idp.certificate_der)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(idp)
}

/// Writes the metadata and the PEM certificate into the data and publish directories.
pub fn publish(idp: &SamlIdp, data_dir: &Path, publish_dir: Option<&Path>) -> anyhow::Result<()> {
    files::publish(
        data_dir,
        publish_dir,
        METADATA_FILE,
        idp.metadata().as_bytes(),
    )?;
    files::publish(
        data_dir,
        publish_dir,
        CERT_PEM_FILE,
        idp.certificate_pem.as_bytes(),
    )
}

/// What `mint-saml` puts in an assertion.
#[derive(Debug)]
pub struct MintSaml<'a> {
    pub entity_id: Option<String>,
    pub subject: &'a str,
    pub audience: &'a str,
    pub recipient: &'a str,
    pub attributes: &'a [String],
    pub lifetime: i64,
    pub response: bool,
}

/// `NAME=VALUE` pairs as attributes, a repeated name gathering its values in order.
fn attributes(pairs: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for pair in pairs {
        let (name, value) = pair.split_once('=').context("attributes are NAME=VALUE")?;
        if name.is_empty() {
            bail!("an attribute needs a name (NAME=VALUE)");
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => out.push((name.to_owned(), vec![value.to_owned()])),
        }
    }
    Ok(out)
}

/// A signed assertion (or a response holding one) as a `…:saml2` subject token.
pub fn mint(data_dir: &Path, m: &MintSaml<'_>) -> anyhow::Result<String> {
    let (key_path, cert_path) = (data_dir.join(KEY_FILE), data_dir.join(CERT_FILE));
    let no_key = || {
        format!(
            "no SAML key in {}: run `ferry-dev-idp serve` first",
            data_dir.display()
        )
    };
    let key = std::fs::read(&key_path).with_context(no_key)?;
    let cert = std::fs::read(&cert_path).with_context(no_key)?;
    let entity = match &m.entity_id {
        Some(e) => e.clone(),
        None => entity_id(&files::recorded_issuer(data_dir)?),
    };
    let idp = SamlIdp::from_pkcs8(&entity, &key, &cert)?;
    let now = ferry_testkit::now();
    let mut a = idp.assertion(m.subject, m.audience, m.recipient, now);
    a.attributes = attributes(m.attributes)?;
    a.not_on_or_after = now.saturating_add(m.lifetime);
    a.confirm_until = a.not_on_or_after;
    let signed = idp.sign(&a.xml(), &a.id)?;
    let xml = if m.response {
        a.response(&signed, &a.id.replacen("_a", "_r", 1))
    } else {
        signed
    };
    Ok(token(&xml))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn repeated_attribute_names_gather_their_values() {
        let pairs = ["group=dev", "email=a@example.com", "group=ops=x"].map(String::from);
        assert_eq!(
            attributes(&pairs).unwrap(),
            vec![
                (
                    "group".to_owned(),
                    vec!["dev".to_owned(), "ops=x".to_owned()]
                ),
                ("email".to_owned(), vec!["a@example.com".to_owned()]),
            ]
        );
        assert!(attributes(&["novalue".to_owned()]).is_err());
        assert!(attributes(&["=v".to_owned()]).is_err());
    }

    #[test]
    fn the_key_survives_and_a_half_kept_pair_is_refused() {
        let dir = std::env::temp_dir().join(format!("ferry-dev-idp-saml-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&dir, "https://a/saml").unwrap();
        let again = load_or_create(&dir, "https://b/saml").unwrap();
        assert_eq!(again.certificate_der, first.certificate_der);
        assert_eq!(again.entity_id, "https://b/saml");
        std::fs::remove_file(dir.join(CERT_FILE)).unwrap();
        assert!(load_or_create(&dir, "https://a/saml").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
