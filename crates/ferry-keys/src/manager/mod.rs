//! The key manager: the ring in the store, the transitions due at `now` (decided by the
//! pure functions of `ferry_core::keyring`), and the in-memory snapshot every request
//! reads: the active signer and the pre-rendered `/jwks` with its ETag.
//!
//! Every change is a compare-and-swap on the store's version; a writer that loses
//! reloads and plans again, so replicas sharing a store converge on one ring and each
//! version is written by exactly one of them. When the store cannot be reached, the
//! snapshot in memory keeps signing and rotation waits.

mod material;
mod replicas;
mod types;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_core::keyring::{self, KeyMeta, KeyState, RingPolicy, Transition};
use serde_json::{Value, json};

use crate::kek::Keks;
use crate::signer::{KeyError, Signer, SoftwareSigner};
use crate::store::{KeyStore, Material, StoredKey, StoredRing};
use material::{Sealed, cannot_sign_reason, check_openable, open_signer, placeholder, reconcile};
pub use replicas::{KekReport, names};
pub use types::{Backend, KeyManager, ManagerConfig, Snapshot};

fn meta_of(ring: &StoredRing) -> Vec<KeyMeta> {
    ring.keys.iter().map(|k| k.meta.clone()).collect()
}

fn jwks_of(ring: &StoredRing) -> (String, String) {
    let body =
        json!({"keys": ring.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string();
    let tag = digest::digest(&digest::SHA256, body.as_bytes());
    let etag = format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(tag.as_ref().get(..16).unwrap_or_default())
    );
    (body, etag)
}

impl KeyManager {
    /// Opens the ring in `store`, initialising it if empty, and checks that the stored
    /// private keys can be opened: a wrong key-encryption key (one that opens none of
    /// them) stops here, with a clear error, rather than producing a silent new key.
    /// Keys sealed under a KEK this replica lacks are published but never signed with
    /// here (see `Snapshot::cannot_sign` and `KekReport`, which names them).
    pub fn open(store: Arc<dyn KeyStore>, cfg: ManagerConfig, now: i64) -> Result<Self, KeyError> {
        let ring = store.load()?;
        check_openable(&cfg.backend, &ring.keys)?;
        let first = Self::build(&cfg.backend, &cfg.policy, &ring, None);
        let mgr = Self {
            store,
            backend: RwLock::new(cfg.backend.clone()),
            cfg,
            rebuild: AtomicBool::new(false),
            current: RwLock::new(Arc::new(placeholder())),
        };
        if let Some(first) = first {
            mgr.install(first);
        }
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

    fn backend(&self) -> Backend {
        self.backend
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the key-encryption keys (a configuration reload that added one): the
    /// snapshot is rebuilt at the next tick, so a replica that could not unseal the
    /// active key signs again as soon as it holds the KEK. Ignored with an HSM.
    pub fn replace_keks(&self, keks: Keks) {
        let mut b = self
            .backend
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Backend::Software { keks: k, .. } = &mut *b {
            *k = Arc::new(keks);
            self.rebuild.store(true, Ordering::SeqCst);
        }
    }

    /// The fingerprints of the key-encryption keys this replica holds, the one it seals
    /// with first (none with an HSM).
    pub fn kek_ids(&self) -> Vec<String> {
        match self.backend() {
            Backend::Software { keks, .. } => keks.ids(),
            Backend::Pkcs11(_) => Vec::new(),
        }
    }

    /// Builds a snapshot for `ring`, reusing `prev`'s signer when the active key is
    /// unchanged. `None` for a ring without an active key. The public keys come from
    /// the ring whatever this replica can unseal; an active key it cannot unseal gives
    /// a snapshot that publishes but does not sign.
    fn build(
        backend: &Backend,
        policy: &RingPolicy,
        ring: &StoredRing,
        prev: Option<&Snapshot>,
    ) -> Option<Snapshot> {
        let active = ring
            .keys
            .iter()
            .find(|k| k.meta.state == KeyState::Active)?;
        let (signer, cannot_sign) = match prev {
            Some(p) if p.active.kid() == active.meta.kid && p.can_sign() => {
                (p.active.clone(), None)
            }
            _ => match open_signer(backend, active) {
                Ok(s) => (s, None),
                Err(e) => (
                    Arc::new(Sealed::new(active)) as Arc<dyn Signer>,
                    Some(cannot_sign_reason(active, &e)),
                ),
            },
        };
        let (jwks, etag) = jwks_of(ring);
        let keys = meta_of(ring);
        Some(Snapshot {
            version: ring.version,
            signing_deadline: keyring::signing_deadline(&keys, policy),
            keys,
            active: signer,
            jwks,
            etag,
            revoked: ring.revoked.clone(),
            max_issued_ttl: ring.max_issued_ttl,
            cannot_sign,
        })
    }

    /// Swaps in `next`, logging once when this replica stops or starts being able to
    /// sign.
    fn install(&self, next: Snapshot) {
        let prev = self.snapshot();
        match (&prev.cannot_sign, &next.cannot_sign) {
            (before, Some(why)) if before.as_ref() != Some(why) => tracing::error!(
                kid = %next.active.kid(),
                reason = %why,
                "this replica cannot sign: POST /token answers 503 and /readyz fails until it holds the key-encryption key (add it and reload) or the ring moves to a key it can unseal; /jwks keeps serving every key"
            ),
            (Some(_), None) => tracing::info!(
                kid = %next.active.kid(),
                "this replica can sign again"
            ),
            _ => {}
        }
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }

    fn refresh(&self, ring: &StoredRing) -> Result<(), KeyError> {
        let prev = self.snapshot();
        let rebuild = self.rebuild.swap(false, Ordering::SeqCst);
        if prev.version == ring.version && !rebuild {
            return Ok(());
        }
        // After a KEK change the signer is opened again (it may be possible now).
        let reuse = (!rebuild).then_some(&*prev);
        if let Some(next) = Self::build(&self.backend(), &self.cfg.policy, ring, reuse) {
            self.install(next);
        }
        Ok(())
    }

    fn new_key(&self, now: i64) -> Result<StoredKey, KeyError> {
        let (kid, jwk, material) = match &self.backend() {
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
                alg: jwk
                    .get("alg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
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
                    (removed, &self.backend())
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
}
