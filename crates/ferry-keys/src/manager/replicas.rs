//! The key-encryption keys of the replicas sharing a store. Each replica records the
//! fingerprints of the KEKs it holds with a heartbeat (`KeyStore::heartbeat`, at every
//! ring poll); entries older than a few poll intervals are ignored. From them and the
//! ring, [`KekReport`] tells whether a KEK rollout is in a safe order: every key of the
//! ring can be unsealed here, and every live replica holds the KEK this one seals new
//! keys with (else keys it generates could never sign there).

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_core::keyring::KeyState;

use super::material::sealed_under;
use super::types::{Backend, KeyManager};
use crate::kek::Keks;
use crate::signer::KeyError;
use crate::store::{Material, Replica, StoredRing};

/// What a configuration's key-encryption keys can do with a ring and beside the live
/// replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KekReport {
    /// Keys of the ring sealed under a KEK not configured here: `(kid, state, KEK
    /// fingerprint)`.
    pub unsealable: Vec<(String, KeyState, String)>,
    /// The fingerprint of the KEK new keys are sealed with.
    pub primary: Option<String>,
    /// The live replicas that do not hold `primary`; `None` when the store keeps no
    /// heartbeats (a single node: nothing to check).
    pub lacking_primary: Option<Vec<Replica>>,
}

impl KekReport {
    /// The report for `ring` with the KEKs `keks` (fingerprints, the sealing one first)
    /// beside the live `replicas`.
    pub fn inspect(ring: &StoredRing, keks: &[String], replicas: Option<Vec<Replica>>) -> Self {
        let unsealable = ring
            .keys
            .iter()
            .filter_map(|k| {
                let fp = sealed_under(k)?;
                (!keks.contains(&fp)).then(|| (k.meta.kid.clone(), k.meta.state, fp))
            })
            .collect();
        let primary = keks.first().cloned();
        let lacking_primary = match (&primary, replicas) {
            (Some(p), Some(r)) => Some(r.into_iter().filter(|r| !r.keks.contains(p)).collect()),
            (None, Some(_)) => Some(Vec::new()),
            (_, None) => None,
        };
        Self {
            unsealable,
            primary,
            lacking_primary,
        }
    }

    /// Whether the active key is sealed under a KEK not configured here.
    pub fn cannot_sign(&self) -> bool {
        self.unsealable
            .iter()
            .any(|(_, s, _)| *s == KeyState::Active)
    }

    /// One line per unsafe finding, naming keys by id and KEKs by fingerprint.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (kid, _, fp) in self
            .unsealable
            .iter()
            .filter(|(_, s, _)| *s == KeyState::Active)
        {
            out.push(format!(
                "the active signing key {kid} is sealed under the key-encryption key {fp}, which this configuration does not hold: \
                 this replica will not sign (POST /token answers 503, /readyz fails) until it holds that key"
            ));
        }
        let others: Vec<&(String, KeyState, String)> = self
            .unsealable
            .iter()
            .filter(|(_, s, _)| *s != KeyState::Active)
            .collect();
        if !others.is_empty() {
            let kids: Vec<&str> = others.iter().map(|(k, _, _)| k.as_str()).collect();
            let fps: BTreeSet<&str> = others.iter().map(|(_, _, f)| f.as_str()).collect();
            out.push(format!(
                "signing keys {} are sealed under key-encryption key(s) {} that this configuration does not hold: they are published, \
                 but this replica cannot sign with them once they become active. Keep an old key-encryption key (as a later entry) until \
                 `ferry keys rewrap` has re-sealed every key",
                kids.join(", "),
                fps.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if let (Some(p), Some(lacking)) = (&self.primary, &self.lacking_primary)
            && !lacking.is_empty()
        {
            out.push(format!(
                "{} live replica(s) ({}) do not hold the key-encryption key {p} that this configuration seals new keys with: \
                 they could not sign with those keys. Add the new key-encryption key as a second key on every replica first, \
                 then make it first (see the README's key-encryption key rotation)",
                lacking.len(),
                names(lacking)
            ));
        }
        out
    }
}

/// The names of `replicas`, for messages.
pub fn names(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl KeyManager {
    /// Records this replica's key-encryption keys (fingerprints) with a heartbeat in a
    /// shared store; nothing for a single node's directory.
    pub fn heartbeat(&self) -> Result<(), KeyError> {
        self.store.heartbeat(&self.cfg.writer, &self.kek_ids())
    }

    /// The replicas whose heartbeat is at most `max_age` old (`None`: the store keeps no
    /// heartbeats).
    pub fn live_replicas(&self, max_age: Duration) -> Result<Option<Vec<Replica>>, KeyError> {
        self.store.live_replicas(max_age)
    }

    /// Re-seals every software key with the first key-encryption key. Returns how many
    /// keys were re-sealed.
    pub fn rewrap(&self) -> Result<usize, KeyError> {
        let backend = self.backend();
        let Backend::Software { keks, .. } = &backend else {
            return Ok(0);
        };
        let primary = keks.primary_id();
        for _ in 0..16 {
            let ring = self.store.load()?;
            let mut count = 0;
            let mut keys = ring.keys.clone();
            for k in &mut keys {
                if let Material::Encrypted { blob } = &k.material
                    && Keks::blob_kek_id(blob) != primary.as_deref()
                {
                    let der = keks.open(blob, &k.meta.kid)?;
                    k.material = Material::Encrypted {
                        blob: keks.seal(&der)?,
                    };
                    count += 1;
                }
            }
            if count == 0 || self.swap(&ring, keys)? {
                return Ok(count);
            }
        }
        Err(KeyError::Store("the key ring is busy".into()))
    }

    /// For each key of the ring, the fingerprint of the key-encryption key it is sealed
    /// under (`None`: in clear or in an HSM), for `ferry keys list`.
    pub fn sealed_under(&self) -> Result<Vec<(String, Option<String>)>, KeyError> {
        Ok(self
            .store
            .load()?
            .keys
            .iter()
            .map(|k| (k.meta.kid.clone(), sealed_under(k)))
            .collect())
    }

    /// The KEK report of this manager's ring, configuration and the live replicas.
    pub fn kek_report(&self, max_age: Duration) -> Result<KekReport, KeyError> {
        let ring = self.store.load()?;
        let replicas = self.store.live_replicas(max_age)?;
        Ok(KekReport::inspect(&ring, &self.kek_ids(), replicas))
    }
}
