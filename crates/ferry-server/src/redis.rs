//! Redis through the maintained `redis` crate: one connection manager (multiplexed,
//! reconnecting in the background), every call bounded by the configured timeout, and a
//! call that fails because the connection dropped retried once on the new one (a Redis
//! restart fails no request). Used by the shared replay cache: its script (see
//! [`crate::replay`]) and a few plain commands (`INFO`), answered as [`Reply`].

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};

/// Why a Redis call failed. The password never appears in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// `replay.redis.addr` has no `:port`.
    #[error("no port in the address")]
    NoPort,
    /// The port of `replay.redis.addr` is not a number.
    #[error("bad port in the address")]
    BadPort,
    /// The address is refused by the client.
    #[error("address: {0}")]
    Address(String),
    /// The client could not be made.
    #[error("client: {0}")]
    Client(String),
    /// The connection manager could not be made.
    #[error("connect: {0}")]
    Connect(String),
    /// The command failed (connection, I/O, or an error the crate reports).
    #[error("{0}")]
    Command(String),
    /// No answer within `replay.redis.timeout`.
    #[error("timed out")]
    TimedOut,
    /// Redis answered with an error reply.
    #[error("Redis refused the command")]
    Refused,
    /// A reply type Ferry never asks for.
    #[error("unsupported reply type")]
    UnsupportedReply,
    /// A reply of a known type but not the shape the caller expects.
    #[error("{0}")]
    Unexpected(&'static str),
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Simple(Vec<u8>),
    /// `:n`.
    Int(i64),
    /// A bulk string; `None` for nil.
    Bulk(Option<Vec<u8>>),
    /// An array; `None` for a nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The elements of an array reply (none for anything else).
    pub fn items(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v,
            _ => Vec::new(),
        }
    }

    /// A bulk or simple string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) | Reply::Simple(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }

    /// The crate's value as a reply; an error reply (or a RESP3-only type Ferry never
    /// asks for) is an error.
    fn from_value(v: Value) -> Result<Self, RedisError> {
        Ok(match v {
            Value::Nil => Reply::Bulk(None),
            Value::Int(n) => Reply::Int(n),
            Value::BulkString(b) => Reply::Bulk(Some(b)),
            Value::SimpleString(s) => Reply::Simple(s.into_bytes()),
            Value::Okay => Reply::Simple(b"OK".to_vec()),
            Value::Array(items) | Value::Set(items) => Reply::Array(Some(
                items
                    .into_iter()
                    .map(Self::from_value)
                    .collect::<Result<_, _>>()?,
            )),
            Value::ServerError(_) => return Err(RedisError::Refused),
            _ => return Err(RedisError::UnsupportedReply),
        })
    }
}

/// The client.
#[derive(Debug)]
pub struct Redis {
    config: ferry_core::config::RedisReplay,
    manager: tokio::sync::OnceCell<ConnectionManager>,
}

impl Redis {
    /// A client for `config`; connects on first use.
    pub fn new(config: ferry_core::config::RedisReplay) -> Self {
        Self {
            config,
            manager: tokio::sync::OnceCell::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ferry_core::config::RedisReplay {
        &self.config
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.max(1))
    }

    /// The connection manager, made on first use (it needs the runtime) and connecting
    /// lazily: a Redis that is down at start fails calls, not the start.
    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        self.manager
            .get_or_try_init(|| async {
                let (host, port) = split_addr(&self.config.addr)?;
                let mut redis = RedisConnectionInfo::default()
                    .set_db(i64::from(self.config.db))
                    .set_skip_set_lib_name();
                if let Some(p) = &self.config.password {
                    redis = redis.set_password(p);
                }
                let info = ConnectionAddr::Tcp(host, port)
                    .into_connection_info()
                    .map_err(|e| RedisError::Address(e.to_string()))?
                    .set_redis_settings(redis);
                let client = Client::open(info).map_err(|e| RedisError::Client(e.to_string()))?;
                // Reconnection is retried briefly: a caller waits at most the timeout,
                // and the next call starts a new attempt.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout()))
                    .set_response_timeout(Some(self.timeout()))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(200));
                client
                    .get_connection_manager_lazy(config)
                    .map_err(|e| RedisError::Connect(e.to_string()))
            })
            .await
            .cloned()
    }

    /// Runs `op` on the connection within the timeout, once more on a fresh connection
    /// when the first attempt lost its connection. Had a lost command run before the
    /// retry, the retry sees its effect: replay writes then refuse the id, a failure on
    /// the safe side.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let manager = self.manager().await?;
            match op(manager.clone()).await {
                Ok(v) => Ok(v),
                Err(e)
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error() =>
                {
                    op(manager)
                        .await
                        .map_err(|e| RedisError::Command(e.to_string()))
                }
                Err(e) => Err(RedisError::Command(e.to_string())),
            }
        };
        tokio::time::timeout(self.timeout(), attempt)
            .await
            .map_err(|_| RedisError::TimedOut)?
    }

    /// One command, within the timeout. An error reply is an error.
    pub async fn call(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut cmd = redis::Cmd::new();
        for a in args {
            cmd.arg(*a);
        }
        let cmd = &cmd;
        let value: Value = self
            .run(move |mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        Reply::from_value(value)
    }

    /// Runs a Lua script (by SHA, loaded on demand, so also after a restart).
    pub async fn script(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Reply, RedisError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let invocation = &invocation;
        let value: Value = self
            .run(move |mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Reply::from_value(value)
    }
}

/// `host:port` (IPv6 in brackets) as its parts.
fn split_addr(addr: &str) -> Result<(String, u16), RedisError> {
    let (host, port) = addr.rsplit_once(':').ok_or(RedisError::NoPort)?;
    let port = port.parse().map_err(|_| RedisError::BadPort)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_addr("10.0.0.5:6380"), Ok(("10.0.0.5".into(), 6380)));
        assert_eq!(split_addr("[::1]:6379"), Ok(("::1".into(), 6379)));
        assert_eq!(split_addr("localhost"), Err(RedisError::NoPort));
        assert_eq!(
            split_addr("localhost:x").unwrap_err().to_string(),
            "bad port in the address"
        );
    }

    #[test]
    fn replies_convert_and_error_replies_are_errors() {
        assert_eq!(
            Reply::from_value(Value::Array(vec![Value::Int(3), Value::Nil])),
            Ok(Reply::Array(Some(vec![Reply::Int(3), Reply::Bulk(None)])))
        );
        assert_eq!(
            Reply::from_value(Value::Okay),
            Ok(Reply::Simple(b"OK".to_vec()))
        );
        assert_eq!(
            Reply::from_value(Value::Double(1.0)),
            Err(RedisError::UnsupportedReply)
        );
    }
}
