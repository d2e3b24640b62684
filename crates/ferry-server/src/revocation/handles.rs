//! Reference-token handles: each handle's SHA-256 mapped to the JWT it stands for, until
//! that JWT's `exp`. Whoever holds a valid subject token may ask for reference tokens,
//! so the store is bounded: at most `limits.max_reference_tokens` live handles (expired
//! ones are dropped first; then a new one is refused, `503`), each JWT at most
//! [`MAX_JWT_BYTES`]. With Redis, one script keeps the count in the sorted set
//! `ferry:ref:index` (score: `exp`, ms) beside the handles, pruned by Redis' own clock.

use super::{Revocations, Store};
use crate::redis::Reply;

/// Largest JWT stored behind a handle, bytes.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Why a handle was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// As many live handles as allowed.
    #[error("reference token store full")]
    Full,
    /// The JWT is larger than [`MAX_JWT_BYTES`].
    #[error("token too large for a reference token")]
    TooLarge,
    /// The store cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

fn handle_key(hash: &str) -> String {
    format!("ferry:ref:{hash}")
}

const INDEX: &[u8] = b"ferry:ref:index";

/// Stores a handle unless `cap` live ones exist: 1 stored, 0 full.
/// KEYS: the handle, the index; ARGV: the JWT, `exp` (ms), cap.
const PUT: &[u8] = br"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
return 1
";

impl Revocations {
    /// Stores a reference token's handle (as its hash) until `exp`, unless `cap` live
    /// handles are held or the JWT is too large.
    pub async fn put_handle(
        &self,
        hash: &str,
        jwt: &str,
        exp: i64,
        now: i64,
        cap: usize,
    ) -> Result<(), HandleError> {
        if jwt.len() > MAX_JWT_BYTES {
            return Err(HandleError::TooLarge);
        }
        match &self.0 {
            Store::Local { handles, .. } => {
                let mut h = handles
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if h.len() >= cap {
                    h.retain(|_, (_, e)| *e >= now);
                    if h.len() >= cap {
                        return Err(HandleError::Full);
                    }
                }
                h.insert(hash.to_owned(), (jwt.to_owned(), exp));
                Ok(())
            }
            Store::Broken(e) => Err(HandleError::Unavailable(e.clone())),
            Store::Redis(r) => {
                let (at, cap) = (exp.saturating_mul(1000).to_string(), cap.to_string());
                let key = handle_key(hash);
                match r
                    .call(&[
                        b"EVAL",
                        PUT,
                        b"2",
                        key.as_bytes(),
                        INDEX,
                        jwt.as_bytes(),
                        at.as_bytes(),
                        cap.as_bytes(),
                    ])
                    .await
                    .map_err(HandleError::Unavailable)?
                {
                    Reply::Int(1) => Ok(()),
                    Reply::Int(0) => Err(HandleError::Full),
                    _ => Err(HandleError::Unavailable("unexpected reply to EVAL".into())),
                }
            }
        }
    }

    /// The JWT a live handle stands for.
    pub async fn get_handle(&self, hash: &str, now: i64) -> Result<Option<String>, String> {
        match &self.0 {
            Store::Local { handles, .. } => Ok(handles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(hash)
                .filter(|(_, exp)| *exp >= now)
                .map(|(jwt, _)| jwt.clone())),
            Store::Broken(e) => Err(e.clone()),
            Store::Redis(r) => Ok(r.call(&[b"GET", handle_key(hash).as_bytes()]).await?.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handles_expire_with_their_token() {
        let dir = tempfile::tempdir().unwrap();
        let r = Revocations::local(dir.path()).unwrap();
        r.put_handle("h", "jwt", 100, 10, 10).await.unwrap();
        assert_eq!(
            r.get_handle("h", 100).await.unwrap().as_deref(),
            Some("jwt")
        );
        assert_eq!(r.get_handle("h", 101).await.unwrap(), None);
        assert_eq!(r.get_handle("other", 50).await.unwrap(), None);
    }

    #[tokio::test]
    async fn handles_are_bounded_in_count_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let r = Revocations::local(dir.path()).unwrap();
        for i in 0..3 {
            r.put_handle(&format!("h{i}"), "jwt", 100, 10, 3)
                .await
                .unwrap();
        }
        assert_eq!(
            r.put_handle("h3", "jwt", 100, 10, 3).await,
            Err(HandleError::Full)
        );
        assert_eq!(r.get_handle("h3", 50).await.unwrap(), None, "not stored");
        // Once the live ones expire there is room again.
        r.put_handle("h3", "jwt", 300, 101, 3).await.unwrap();
        let big = "x".repeat(MAX_JWT_BYTES + 1);
        assert_eq!(
            r.put_handle("big", &big, 300, 101, 3).await,
            Err(HandleError::TooLarge)
        );
        let fits = "x".repeat(MAX_JWT_BYTES);
        r.put_handle("fits", &fits, 300, 101, 3).await.unwrap();
    }
}
