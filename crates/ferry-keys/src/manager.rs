//! The key manager: the ring in the store, the transitions due at `now` (decided by the
//! pure functions of `ferry_core::keyring`), and the in-memory snapshot every request
//! reads: the active signer and the pre-rendered `/jwks` with its ETag.
//!
//! Every change is a compare-and-swap on the store's version; a writer that loses
//! reloads and plans again, so replicas sharing a store converge on one ring and each
//! version is written by exactly one of them. When the store cannot be reached, the
//! snapshot in memory keeps signing and rotation waits.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_core::keyring::{self, KeyMeta, KeyState, RingPolicy, Transition};
use serde_json::json;

use crate::kek::Keks;
use crate::pkcs11::Hsm;
use crate::signer::{KeyError, Signer, SigningAlg, SoftwareSigner};
use crate::store::{KeyStore, Material, StoredKey, StoredRing};

/// Where new private keys are made and how stored ones are opened.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Software keys, sealed with KEKs (or, for development only, in clear).
    Software {
        /// The key-encryption keys.
        keks: Arc<Keks>,
        /// Store new keys in clear (development only).
        plaintext: bool,
    },
    /// Keys generated and held in a PKCS#11 token.
    Pkcs11(Arc<Hsm>),
}

/// What the manager needs besides the store.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Algorithm of new keys.
    pub alg: SigningAlg,
    /// Ring timing.
    pub policy: RingPolicy,
    /// Key material backend.
    pub backend: Backend,
    /// This writer's name in the store's history (host:pid).
    pub writer: String,
}

/// What requests read: immutable, swapped whole.
#[derive(Debug)]
pub struct Snapshot {
    /// The store version this snapshot reflects.
    pub version: u64,
    /// The ring's lifecycle records.
    pub keys: Vec<KeyMeta>,
    /// The signing key.
    pub active: Arc<dyn Signer>,
    /// `/jwks` body: pending, active and retired public keys.
    pub jwks: String,
    /// A strong ETag of `jwks`.
    pub etag: String,
    /// Keys revoked in an emergency whose tokens may still be alive.
    pub revoked: Vec<crate::store::RevokedKey>,
    /// The latest `exp` a token signed by `active` may carry
    /// (`keyring::signing_deadline`), computed once per ring version.
    pub signing_deadline: Option<i64>,
    /// The longest token lifetime ever configured (`StoredRing::max_issued_ttl`).
    pub max_issued_ttl: i64,
}

/// The key manager.
#[derive(Debug)]
pub struct KeyManager {
    store: Arc<dyn KeyStore>,
    cfg: ManagerConfig,
    current: RwLock<Arc<Snapshot>>,
}

fn meta_of(ring: &StoredRing) -> Vec<KeyMeta> {
    ring.keys.iter().map(|k| k.meta.clone()).collect()
}

fn jwks_of(ring: &StoredRing) -> (String, String) {
    let body =
        json!({"keys": ring.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string();
    let tag = digest::digest(&digest::SHA256, body.as_bytes());
    let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]));
    (body, etag)
}

impl KeyManager {
    /// Opens the ring in `store`, initialising it if empty, and checks that every
    /// stored private key can be opened (a wrong key-encryption key stops here, with a
    /// clear error, rather than producing a silent new key).
    pub fn open(store: Arc<dyn KeyStore>, cfg: ManagerConfig, now: i64) -> Result<Self, KeyError> {
        let ring = store.load()?;
        for k in &ring.keys {
            open_signer(&cfg.backend, k)?;
        }
        let first = Self::build(&cfg, &ring, None)?;
        let mgr = Self {
            store,
            cfg,
            current: RwLock::new(Arc::new(first.unwrap_or_else(placeholder))),
        };
        mgr.tick(now)?;
        if keyring::check(&mgr.snapshot().keys).is_err() {
            return Err(KeyError::Store("the key ring has no active key".into()));
        }
        Ok(mgr)
    }

    /// The snapshot requests read.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The signing key.
    pub fn active(&self) -> Arc<dyn Signer> {
        self.snapshot().active.clone()
    }

    /// The latest `exp` a token signed now may carry (see `keyring::signing_deadline`).
    pub fn signing_deadline(&self) -> Option<i64> {
        self.snapshot().signing_deadline
    }

    /// The ring's timing.
    pub fn policy(&self) -> &RingPolicy {
        &self.cfg.policy
    }

    /// Builds a snapshot for `ring`, reusing `prev`'s signer when the active key is
    /// unchanged. `None` for a ring without an active key.
    fn build(
        cfg: &ManagerConfig,
        ring: &StoredRing,
        prev: Option<&Snapshot>,
    ) -> Result<Option<Snapshot>, KeyError> {
        let Some(active) = ring.keys.iter().find(|k| k.meta.state == KeyState::Active) else {
            return Ok(None);
        };
        let signer = match prev {
            Some(p) if p.active.kid() == active.meta.kid => p.active.clone(),
            _ => open_signer(&cfg.backend, active)?,
        };
        let (jwks, etag) = jwks_of(ring);
        let keys = meta_of(ring);
        Ok(Some(Snapshot {
            version: ring.version,
            signing_deadline: keyring::signing_deadline(&keys, &cfg.policy),
            keys,
            active: signer,
            jwks,
            etag,
            revoked: ring.revoked.clone(),
            max_issued_ttl: ring.max_issued_ttl,
        }))
    }

    fn refresh(&self, ring: &StoredRing) -> Result<(), KeyError> {
        let prev = self.snapshot();
        if prev.version == ring.version {
            return Ok(());
        }
        if let Some(next) = Self::build(&self.cfg, ring, Some(&prev))? {
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        }
        Ok(())
    }

    fn new_key(&self, now: i64) -> Result<StoredKey, KeyError> {
        let (kid, jwk, material) = match &self.cfg.backend {
            Backend::Software { keks, plaintext } => {
                let (signer, der) = SoftwareSigner::generate(self.cfg.alg)?;
                let material = if *plaintext {
                    Material::Plaintext {
                        pkcs8: URL_SAFE_NO_PAD.encode(&der),
                    }
                } else {
                    Material::Encrypted {
                        blob: keks.seal(&der)?,
                    }
                };
                (signer.kid().to_owned(), signer.public_jwk(), material)
            }
            Backend::Pkcs11(hsm) => {
                let mut rnd = [0u8; 12];
                aws_lc_rs::rand::fill(&mut rnd).map_err(|_| KeyError::Generate)?;
                let label = format!("ferry-{}", URL_SAFE_NO_PAD.encode(rnd));
                let signer = hsm.generate(&label)?;
                (
                    signer.kid().to_owned(),
                    signer.public_jwk(),
                    Material::Pkcs11 { label },
                )
            }
        };
        Ok(StoredKey {
            meta: KeyMeta {
                kid,
                alg: jwk["alg"].as_str().unwrap_or_default().to_owned(),
                state: KeyState::Pending,
                published_at: now,
                activated_at: None,
                retired_at: None,
            },
            jwk,
            material,
        })
    }

    /// Writes `keys` over `ring` if nobody else wrote since it was read.
    fn swap(&self, ring: &StoredRing, keys: Vec<StoredKey>) -> Result<bool, KeyError> {
        let next = StoredRing {
            version: ring.version,
            written_by: self.cfg.writer.clone(),
            keys,
            revoked: ring.revoked.clone(),
            max_issued_ttl: ring.max_issued_ttl,
        };
        self.store.compare_and_swap(ring.version, &next)
    }

    /// Performs the transitions due at `now`; returns whether the ring changed.
    pub fn tick(&self, now: i64) -> Result<bool, KeyError> {
        let mut changed = false;
        for _ in 0..16 {
            let ring = self.store.load()?;
            let mut metas = meta_of(&ring);
            let policy = self.cfg.policy.covering(ring.max_issued_ttl);
            let Some(step) = keyring::next_step(&metas, &policy, now) else {
                self.refresh(&ring)?;
                return Ok(changed);
            };
            let mut keys = ring.keys.clone();
            let mut removed = None;
            match &step {
                Transition::Generate => {
                    let k = self.new_key(now)?;
                    keyring::apply(&mut metas, &step, now, Some(k.meta.clone()));
                    keys.push(k);
                }
                Transition::Remove(kid) => {
                    removed = keys
                        .iter()
                        .find(|k| &k.meta.kid == kid)
                        .map(|k| k.material.clone());
                    keyring::apply(&mut metas, &step, now, None);
                }
                Transition::Activate(_) => keyring::apply(&mut metas, &step, now, None),
            }
            let keys = reconcile(keys, &metas);
            if self.swap(&ring, keys)? {
                changed = true;
                tracing::info!(transition = ?step, version = ring.version + 1, "signing key ring changed");
                if let (Some(Material::Pkcs11 { label }), Backend::Pkcs11(hsm)) =
                    (removed, &self.cfg.backend)
                    && let Err(e) = hsm.destroy(&label)
                {
                    tracing::warn!(error = %e, "removing a retired key from the token failed");
                }
            }
        }
        Err(KeyError::Store("the key ring did not settle".into()))
    }

    /// An orderly rotation now: the standby becomes active, if it has been published
    /// for `jwks_max_age + leeway`. Returns the new active kid.
    pub fn rotate(&self, now: i64) -> Result<String, KeyError> {
        for _ in 0..16 {
            let ring = self.store.load()?;
            let mut metas = meta_of(&ring);
            let ahead = self.cfg.policy.publish_ahead();
            let standby = metas
                .iter()
                .filter(|k| k.state == KeyState::Pending)
                .min_by_key(|k| k.published_at)
                .cloned()
                .ok_or_else(|| KeyError::Store("no standby key".into()))?;
            if now - standby.published_at < ahead {
                return Err(KeyError::Store(format!(
                    "the standby key {} has been published for {}s; it may sign after {}s (jwks_max_age + leeway)",
                    standby.kid,
                    now - standby.published_at,
                    ahead
                )));
            }
            keyring::apply(
                &mut metas,
                &Transition::Activate(standby.kid.clone()),
                now,
                None,
            );
            if self.swap(&ring, reconcile(ring.keys.clone(), &metas))? {
                self.tick(now)?;
                return Ok(standby.kid);
            }
        }
        Err(KeyError::Store("the key ring is busy".into()))
    }

    /// Records that tokens may now be issued for up to `ttl` seconds (raising the
    /// ring's [`StoredRing::max_issued_ttl`], never lowering it), before any is.
    pub fn record_issued_ttl(&self, ttl: i64) -> Result<(), KeyError> {
        for _ in 0..16 {
            let ring = self.store.load()?;
            if ring.max_issued_ttl >= ttl {
                return self.refresh(&ring);
            }
            let mut next = ring.clone();
            next.written_by = self.cfg.writer.clone();
            next.max_issued_ttl = ttl;
            if self.store.compare_and_swap(ring.version, &next)? {
                tracing::info!(
                    transition = "longest token lifetime raised",
                    max_issued_ttl = ttl,
                    version = ring.version + 1,
                    "signing key ring changed"
                );
                return self.refresh(&self.store.load()?);
            }
        }
        Err(KeyError::Store("the key ring is busy".into()))
    }

    /// Emergency revocation of `kid` (see `keyring::revoke`).
    pub fn revoke(&self, kid: &str, now: i64, force: bool) -> Result<(), KeyError> {
        for _ in 0..16 {
            let ring = self.store.load()?;
            let mut metas = meta_of(&ring);
            let policy = self.cfg.policy.covering(ring.max_issued_ttl);
            keyring::revoke(&mut metas, kid, &policy, now, force)
                .map_err(|e| KeyError::Store(e.to_string()))?;
            // Listed until every token it signed has expired everywhere.
            let mut listed = ring.clone();
            let keep = policy.keep_after();
            listed
                .revoked
                .retain(|r| r.at + keep >= now && r.kid != kid);
            listed.revoked.push(crate::store::RevokedKey {
                kid: kid.to_owned(),
                at: now,
            });
            if self.swap(&listed, reconcile(ring.keys.clone(), &metas))? {
                tracing::warn!(kid, "signing key revoked: it left /jwks");
                self.tick(now)?;
                return Ok(());
            }
        }
        Err(KeyError::Store("the key ring is busy".into()))
    }

    /// Re-seals every software key with the first key-encryption key. Returns how many
    /// keys were re-sealed.
    pub fn rewrap(&self) -> Result<usize, KeyError> {
        let Backend::Software { keks, .. } = &self.cfg.backend else {
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
}

/// Keeps the stored keys that `metas` still lists, with their updated records.
fn reconcile(keys: Vec<StoredKey>, metas: &[KeyMeta]) -> Vec<StoredKey> {
    let by_kid: HashMap<&str, &KeyMeta> = metas.iter().map(|m| (m.kid.as_str(), m)).collect();
    keys.into_iter()
        .filter_map(|mut k| {
            let m = by_kid.get(k.meta.kid.as_str())?;
            k.meta = (*m).clone();
            Some(k)
        })
        .collect()
}

/// Opens a stored key's private half.
fn open_signer(backend: &Backend, k: &StoredKey) -> Result<Arc<dyn Signer>, KeyError> {
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

/// Before the first tick: a snapshot that is replaced before any request sees it.
fn placeholder() -> Snapshot {
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
    }
}
