//! Opening stored keys: the private half of a stored key through the configured backend
//! (checked against the stored public key), and the stand-ins a snapshot holds when
//! there is no key to sign with (before the first tick; an active key this replica
//! cannot unseal).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_core::keyring::KeyMeta;
use serde_json::Value;

use super::types::{Backend, Snapshot};
use crate::signer::{KeyError, Signer, SigningAlg, SoftwareSigner};
use crate::store::{Material, StoredKey};

/// Keeps the stored keys that `metas` still lists, with their updated records.
pub(super) fn reconcile(keys: Vec<StoredKey>, metas: &[KeyMeta]) -> Vec<StoredKey> {
    let by_kid: HashMap<&str, &KeyMeta> = metas.iter().map(|m| (m.kid.as_str(), m)).collect();
    keys.into_iter()
        .filter_map(|mut k| {
            let m = by_kid.get(k.meta.kid.as_str())?;
            k.meta = (*m).clone();
            Some(k)
        })
        .collect()
}

/// Opens a stored key's private half, and checks that it is the key the stored public
/// key (and so `/jwks`) describes: a token signed with any other key would verify
/// nowhere.
pub(super) fn open_signer(backend: &Backend, k: &StoredKey) -> Result<Arc<dyn Signer>, KeyError> {
    let signer = open_material(backend, k)?;
    if signer.kid() != k.meta.kid
        || k.jwk.get("kid").and_then(Value::as_str) != Some(k.meta.kid.as_str())
    {
        return Err(KeyError::Store(format!(
            "key {}: its private key does not match its stored public key",
            k.meta.kid
        )));
    }
    Ok(signer)
}

fn open_material(backend: &Backend, k: &StoredKey) -> Result<Arc<dyn Signer>, KeyError> {
    let alg = SigningAlg::from_name(&k.meta.alg).ok_or(KeyError::InvalidKey("supported"))?;
    match (&k.material, backend) {
        (Material::Encrypted { blob }, Backend::Software { keks, .. }) => {
            let der = keks.open(blob, &k.meta.kid)?;
            Ok(Arc::new(SoftwareSigner::from_pkcs8(alg, &der)?))
        }
        (
            Material::Plaintext { pkcs8 },
            Backend::Software {
                plaintext: true, ..
            },
        ) => {
            let der = URL_SAFE_NO_PAD
                .decode(pkcs8)
                .map_err(|_| KeyError::InvalidKey("PKCS#8"))?;
            Ok(Arc::new(SoftwareSigner::from_pkcs8(alg, &der)?))
        }
        (Material::Plaintext { .. }, _) => Err(KeyError::Store(format!(
            "key {} is stored in clear but plaintext keys are not enabled",
            k.meta.kid
        ))),
        (Material::Pkcs11 { label }, Backend::Pkcs11(hsm)) => Ok(Arc::new(hsm.signer(label)?)),
        (Material::Pkcs11 { .. }, _) => Err(KeyError::Store(format!(
            "key {} is held in an HSM but no HSM is configured",
            k.meta.kid
        ))),
        (Material::Encrypted { .. }, Backend::Pkcs11(_)) => Err(KeyError::Store(format!(
            "key {} is a software key but the HSM backend is configured",
            k.meta.kid
        ))),
    }
}

/// Checks at start that the configured backend opens the ring's keys. Any failure but a
/// missing key-encryption key stops here, as does a ring none of whose sealed keys
/// opens (a wrong KEK: a clear error rather than a silent new key). Keys sealed under a
/// KEK this replica lacks are published, but it cannot sign with them.
pub(super) fn check_openable(backend: &Backend, keys: &[StoredKey]) -> Result<(), KeyError> {
    let mut first_wrong = None;
    let mut opened = 0;
    for k in keys {
        match open_signer(backend, k) {
            Ok(_) => opened += 1,
            Err(e @ KeyError::WrongKek(_)) => {
                first_wrong.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match first_wrong {
        Some(e) if opened == 0 => Err(e),
        _ => Ok(()),
    }
}

/// The fingerprint of the KEK a stored key is sealed under.
pub(super) fn sealed_under(k: &StoredKey) -> Option<String> {
    match &k.material {
        Material::Encrypted { blob } => crate::kek::Keks::blob_kek_id(blob).map(str::to_owned),
        _ => None,
    }
}

/// Why `active` cannot sign here, for logs and the admin `/readyz`: its id and the
/// fingerprint of the KEK it needs, never key material.
pub(super) fn cannot_sign_reason(active: &StoredKey, e: &KeyError) -> String {
    match (e, sealed_under(active)) {
        (KeyError::WrongKek(_), Some(fp)) => format!(
            "the active signing key {} is sealed under the key-encryption key {fp}, which this replica does not hold",
            active.meta.kid
        ),
        _ => format!(
            "the active signing key {} cannot be opened: {e}",
            active.meta.kid
        ),
    }
}

/// The active key's stand-in while this replica cannot unseal it: its public half
/// (so everything that only names the key works) and a refusal to sign.
#[derive(Debug)]
pub(super) struct Sealed {
    kid: String,
    alg: &'static str,
    jwk: serde_json::Value,
}

impl Sealed {
    pub(super) fn new(k: &StoredKey) -> Self {
        Self {
            kid: k.meta.kid.clone(),
            alg: SigningAlg::from_name(&k.meta.alg).map_or("none", SigningAlg::name),
            jwk: k.jwk.clone(),
        }
    }
}

impl Signer for Sealed {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn alg(&self) -> &'static str {
        self.alg
    }
    fn public_jwk(&self) -> serde_json::Value {
        self.jwk.clone()
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeyError> {
        Err(KeyError::CannotSign(self.kid.clone()))
    }
}

/// Before the first tick: a snapshot that is replaced before any request sees it.
pub(super) fn placeholder() -> Snapshot {
    #[derive(Debug)]
    struct None_;
    impl Signer for None_ {
        fn kid(&self) -> &str {
            ""
        }
        fn alg(&self) -> &'static str {
            "none"
        }
        fn public_jwk(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeyError> {
            Err(KeyError::Sign)
        }
    }
    Snapshot {
        version: 0,
        keys: Vec::new(),
        active: Arc::new(None_),
        jwks: "{\"keys\":[]}".into(),
        etag: "\"empty\"".into(),
        revoked: Vec::new(),
        signing_deadline: None,
        max_issued_ttl: 0,
        cannot_sign: None,
    }
}
