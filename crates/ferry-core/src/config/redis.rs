//! The shared replay cache's address (`replay.redis`), parsed once at load; its
//! password never reaches a `Debug` print.

use super::durations::duration;
use super::errors::ConfigErrors;
use super::raw::RawReplay;

/// `replay`: the shared replay cache, when `replay.redis` is set.
pub(super) fn replay(errs: &mut ConfigErrors, r: &RawReplay) -> Option<RedisReplay> {
    let url = r.redis.as_deref()?;
    match RedisReplay::parse(url) {
        Ok(mut c) => {
            c.fail_open = r.fail_open.unwrap_or(false);
            c.timeout_ms = duration(errs, "replay.timeout", r.timeout.as_ref(), 1) * 1000;
            Some(c)
        }
        Err(e) => {
            errs.push("replay.redis", e.to_string());
            None
        }
    }
}

/// Why `replay.redis` is refused. Never echoes the URL (it may carry a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisUrlError {
    /// Not a URL.
    #[error("not a URL")]
    NotUrl,
    /// Another scheme than `redis`.
    #[error("only redis:// URLs are supported")]
    Scheme,
    /// No host.
    #[error("no host")]
    NoHost,
    /// A path other than a database number.
    #[error("the path must be a database number")]
    Database,
}

/// Where the shared replay cache lives: `redis://[:password@]host:port[/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisReplay {
    /// `host:port`.
    pub addr: String,
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// `SELECT` database.
    pub db: u32,
    /// Accept assertions when Redis cannot be reached (default: refuse them).
    pub fail_open: bool,
    /// Per-command timeout, milliseconds.
    pub timeout_ms: u64,
}

impl std::fmt::Debug for RedisReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplay")
            .field("addr", &self.addr)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("fail_open", &self.fail_open)
            .finish()
    }
}

impl RedisReplay {
    /// Parses a `redis://` URL (no TLS: run Redis on a private network or loopback).
    pub fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let u = url::Url::parse(url).map_err(|_| RedisUrlError::NotUrl)?;
        if u.scheme() != "redis" {
            return Err(RedisUrlError::Scheme);
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(RedisUrlError::NoHost)?;
        let port = u.port().unwrap_or(6379);
        let db = match u.path().trim_start_matches('/') {
            "" => 0,
            d => d.parse().map_err(|_| RedisUrlError::Database)?,
        };
        Ok(Self {
            addr: format!("{host}:{port}"),
            password: u.password().map(str::to_owned),
            db,
            fail_open: false,
            timeout_ms: 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_each_with_their_error() {
        let r = RedisReplay::parse("redis://:pw@10.0.0.5:6380/2").unwrap();
        assert_eq!(
            (r.addr.as_str(), r.password.as_deref(), r.db),
            ("10.0.0.5:6380", Some("pw"), 2)
        );
        assert!(!r.fail_open, "fails closed by default");
        assert!(
            !format!("{r:?}").contains("pw"),
            "the password is never printed"
        );
        let d = RedisReplay::parse("redis://localhost").unwrap();
        assert_eq!(
            (d.addr.as_str(), d.password, d.db),
            ("localhost:6379", None, 0)
        );
        for (url, want) in [
            ("rediss://localhost", RedisUrlError::Scheme),
            ("redis://localhost/x", RedisUrlError::Database),
            ("localhost:6379", RedisUrlError::Scheme),
            ("not a url", RedisUrlError::NotUrl),
            ("redis:///0", RedisUrlError::NoHost),
        ] {
            assert_eq!(RedisReplay::parse(url).err(), Some(want), "{url}");
        }
    }
}
