//! Keys held in a PKCS#11 token (an HSM; SoftHSM2 in tests): the P-256 private key is
//! generated inside the token as sensitive and non-extractable and never leaves it.
//! Ferry stores only the key's label. Signing hashes in software and asks the token
//! for a raw ECDSA signature (`CKM_ECDSA`, which returns `r || s`, the JWS form).

use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde_json::Value;

use crate::signer::{KeyError, Signer, finish_jwk, p256_jwk};

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

fn hsm(e: impl std::fmt::Display) -> KeyError {
    KeyError::Hsm(e.to_string())
}

/// A logged-in view of one token.
pub struct Hsm {
    ctx: Pkcs11,
    slot: Slot,
    pin: String,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("slot", &self.slot)
            .field("pin", &"[redacted]")
            .finish()
    }
}

impl Hsm {
    /// Loads the PKCS#11 module and finds the token labelled `token_label`.
    pub fn open(module: &Path, token_label: &str, pin: String) -> Result<Arc<Self>, KeyError> {
        let ctx = Pkcs11::new(module)
            .map_err(|e| KeyError::Hsm(format!("loading {}: {e}", module.display())))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(hsm(e)),
        }
        let mut found = None;
        for slot in ctx.get_slots_with_token().map_err(hsm)? {
            let info = ctx.get_token_info(slot).map_err(hsm)?;
            if info.label().trim_end() == token_label {
                found = Some(slot);
                break;
            }
        }
        let slot =
            found.ok_or_else(|| KeyError::Hsm(format!("no token labelled {token_label:?}")))?;
        Ok(Arc::new(Self { ctx, slot, pin }))
    }

    fn session(&self) -> Result<Session, KeyError> {
        let s = self.ctx.open_rw_session(self.slot).map_err(hsm)?;
        match s.login(UserType::User, Some(&AuthPin::new(self.pin.clone().into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(s),
            Err(e) => Err(hsm(e)),
        }
    }

    /// Generates a P-256 key pair inside the token under `label`.
    pub fn generate(&self, label: &str) -> Result<HsmSigner, KeyError> {
        let s = self.session()?;
        let id = label.as_bytes().to_vec();
        let public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::KeyType(KeyType::EC),
            Attribute::Verify(true),
            Attribute::EcParams(P256_OID.to_vec()),
            Attribute::Label(id.clone()),
            Attribute::Id(id.clone()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(id.clone()),
            Attribute::Id(id),
        ];
        s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(hsm)?;
        drop(s);
        self.signer(label)
    }

    fn find(&self, s: &Session, label: &str, class: ObjectClass) -> Result<ObjectHandle, KeyError> {
        let template = [
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        s.find_objects(&template)
            .map_err(hsm)?
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::Hsm(format!("no key labelled {label:?} in the token")))
    }

    /// A signer for the key pair labelled `label`.
    pub fn signer(&self, label: &str) -> Result<HsmSigner, KeyError> {
        let s = self.session()?;
        let public = self.find(&s, label, ObjectClass::PUBLIC_KEY)?;
        let private = self.find(&s, label, ObjectClass::PRIVATE_KEY)?;
        let point = match s
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(hsm)?
            .pop()
        {
            Some(Attribute::EcPoint(p)) => p,
            _ => return Err(KeyError::Hsm("public key has no EC point".into())),
        };
        // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
        let raw = match point.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
            other if other.len() == 65 => other.to_vec(),
            _ => return Err(KeyError::Hsm("unexpected EC point encoding".into())),
        };
        let jwk = p256_jwk(&raw).ok_or_else(|| KeyError::Hsm("not a P-256 point".into()))?;
        let (kid, jwk) = finish_jwk(jwk, "ES256");
        Ok(HsmSigner {
            session: Mutex::new(s),
            key: private,
            kid,
            jwk,
        })
    }

    /// Destroys the key pair labelled `label` (after it left the ring).
    pub fn destroy(&self, label: &str) -> Result<(), KeyError> {
        let s = self.session()?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if let Ok(h) = self.find(&s, label, class) {
                s.destroy_object(h).map_err(hsm)?;
            }
        }
        Ok(())
    }
}

/// A signer whose private key stays in the token.
pub struct HsmSigner {
    session: Mutex<Session>,
    key: ObjectHandle,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for HsmSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmSigner").field("kid", &self.kid).finish()
    }
}

impl Signer for HsmSigner {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn alg(&self) -> &'static str {
        "ES256"
    }
    fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let hash = digest::digest(&digest::SHA256, msg);
        let session = self.session.lock().map_err(|_| KeyError::Sign)?;
        let sig = session
            .sign(&Mechanism::Ecdsa, self.key, hash.as_ref())
            .map_err(hsm)?;
        if sig.len() != 64 {
            return Err(KeyError::Hsm(format!(
                "unexpected ECDSA signature length {}",
                sig.len()
            )));
        }
        Ok(sig)
    }
}
