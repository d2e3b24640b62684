//! Envelope encryption of private keys at rest with key-encryption keys (KEKs):
//! AES-256-GCM, a fresh 96-bit nonce per blob, and the KEK's id bound in as associated
//! data. Several KEKs may be configured: blobs are sealed with the first and opened with
//! whichever matches, so a KEK is rotated by adding the new one first and running
//! `ferry keys rewrap`.
//!
//! Blob format: `v1.<kek id (8 bytes)>.<nonce (12 bytes)>.<ciphertext+tag>`, each part
//! base64url.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::signer::KeyError;

/// Why a key-encryption key's text form is refused. Never echoes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    /// Not base64.
    #[error("a key-encryption key is 32 random bytes in base64")]
    NotBase64,
    /// Not 32 bytes.
    #[error("a key-encryption key is 32 bytes, this one is {0}")]
    Length(usize),
    /// Refused by AES-256-GCM.
    #[error("invalid key-encryption key")]
    Invalid,
}

/// One key-encryption key.
pub struct Kek {
    id: [u8; 8],
    key: LessSafeKey,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", URL_SAFE_NO_PAD.encode(self.id))
    }
}

impl Kek {
    /// A KEK from its text form: 32 random bytes, base64 (standard or url-safe).
    pub fn parse(text: &str) -> Result<Self, KekError> {
        let t = text.trim();
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| KekError::NotBase64)?;
        if bytes.len() != 32 {
            return Err(KekError::Length(bytes.len()));
        }
        let d = digest::digest(&digest::SHA256, &bytes);
        // The id: the digest's first 8 bytes.
        let mut id = [0u8; 8];
        for (to, from) in id.iter_mut().zip(d.as_ref()) {
            *to = *from;
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KekError::Invalid)?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }

    /// A new random KEK in its text form.
    pub fn generate_text() -> Result<String, KeyError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Generate)?;
        Ok(STANDARD.encode(bytes))
    }

    /// The KEK's id, as stored in blobs: its fingerprint (the first 8 bytes of the
    /// SHA-256 of the key, base64url), safe to log and to record in the store.
    pub fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.id)
    }
}

/// The configured KEKs: seal with the first, open with any.
#[derive(Debug, Default)]
pub struct Keks(Vec<Kek>);

impl Keks {
    /// KEKs in order of preference.
    pub fn new(keks: Vec<Kek>) -> Self {
        Self(keks)
    }

    /// Whether any KEK is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The id of the KEK new blobs are sealed with.
    pub fn primary_id(&self) -> Option<String> {
        self.0.first().map(Kek::id)
    }

    /// The fingerprints (ids) of the KEKs, the one new blobs are sealed with first.
    pub fn ids(&self) -> Vec<String> {
        self.0.iter().map(Kek::id).collect()
    }

    /// Whether a KEK with fingerprint `id` is configured.
    pub fn has(&self, id: &str) -> bool {
        self.0.iter().any(|k| k.id() == id)
    }

    /// Encrypts `plaintext` with the first KEK.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, KeyError> {
        self.seal_bound(plaintext, b"")
    }

    /// Encrypts `plaintext` with the first KEK, binding `context` (authenticated, not
    /// stored): the blob opens only with the same context, so it cannot be moved to
    /// another record or another purpose. An empty context is [`Keks::seal`].
    pub fn seal_bound(&self, plaintext: &[u8], context: &[u8]) -> Result<String, KeyError> {
        let kek = self
            .0
            .first()
            .ok_or_else(|| KeyError::Store("no key-encryption key configured".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Generate)?;
        let mut buf = plaintext.to_vec();
        kek.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([&kek.id[..], context].concat()),
                &mut buf,
            )
            .map_err(|_| KeyError::Store("encryption failed".into()))?;
        Ok(format!(
            "v1.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(kek.id),
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(buf)
        ))
    }

    /// The id of the KEK a blob was sealed with.
    pub fn blob_kek_id(blob: &str) -> Option<&str> {
        blob.strip_prefix("v1.")?.split('.').next()
    }

    /// Decrypts a blob with the KEK that sealed it. `kid` names the key in errors.
    pub fn open(&self, blob: &str, kid: &str) -> Result<Vec<u8>, KeyError> {
        self.open_bound(blob, b"", kid)
    }

    /// Decrypts a blob sealed by [`Keks::seal_bound`] with the same `context`.
    pub fn open_bound(&self, blob: &str, context: &[u8], kid: &str) -> Result<Vec<u8>, KeyError> {
        let wrong = || KeyError::WrongKek(kid.to_owned());
        let parts: Vec<&str> = blob
            .strip_prefix("v1.")
            .ok_or_else(wrong)?
            .split('.')
            .collect();
        let [id, nonce, ct] = parts.as_slice() else {
            return Err(KeyError::Store(format!(
                "key {kid}: malformed encrypted blob"
            )));
        };
        let id = URL_SAFE_NO_PAD.decode(id).map_err(|_| wrong())?;
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(wrong)?;
        let kek = self
            .0
            .iter()
            .find(|k| k.id[..] == id[..])
            .ok_or_else(wrong)?;
        let mut buf = URL_SAFE_NO_PAD.decode(ct).map_err(|_| wrong())?;
        let plain = kek
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([&kek.id[..], context].concat()),
                &mut buf,
            )
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotation() {
        let a = Kek::generate_text().unwrap();
        let b = Kek::generate_text().unwrap();
        let old = Keks::new(vec![Kek::parse(&a).unwrap()]);
        let blob = old.seal(b"secret").unwrap();
        assert_eq!(old.open(&blob, "k").unwrap(), b"secret");
        // The new KEK first, the old one still accepted.
        let both = Keks::new(vec![Kek::parse(&b).unwrap(), Kek::parse(&a).unwrap()]);
        assert_eq!(both.open(&blob, "k").unwrap(), b"secret");
        assert_ne!(
            Keks::blob_kek_id(&both.seal(b"x").unwrap()),
            Keks::blob_kek_id(&blob)
        );
        // A wrong KEK is a clear error, never garbage.
        let wrong = Keks::new(vec![Kek::parse(&b).unwrap()]);
        assert!(matches!(wrong.open(&blob, "k"), Err(KeyError::WrongKek(_))));
        // Tampering is detected.
        let mut t = blob.clone();
        t.pop();
        t.push(if blob.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open(&t, "k").is_err());
        assert!(Kek::parse("too-short").is_err());
    }

    #[test]
    fn a_bound_blob_opens_only_with_its_context() {
        let keks = Keks::new(vec![Kek::parse(&Kek::generate_text().unwrap()).unwrap()]);
        let blob = keks.seal_bound(b"jwt", b"handle:a").unwrap();
        assert_eq!(keks.open_bound(&blob, b"handle:a", "h").unwrap(), b"jwt");
        // Twins: another record's context, or none, does not open it.
        assert!(keks.open_bound(&blob, b"handle:b", "h").is_err());
        assert!(keks.open(&blob, "h").is_err());
        // An unbound blob still opens as before.
        let plain = keks.seal(b"k").unwrap();
        assert_eq!(keks.open_bound(&plain, b"", "k").unwrap(), b"k");
    }
}
