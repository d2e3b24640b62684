//! A small Redis (RESP2/RESP3) client: one kept connection, commands in sequence, a
//! command that fails on a kept connection retried once on a fresh one (a Redis
//! restart fails no request), every call bounded by the configured timeout. Used by the
//! shared replay cache and the shared revocation state.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

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
}

const MAX_BULK: usize = 1 << 20;
const MAX_ITEMS: usize = 1 << 20;

/// The client.
#[derive(Debug)]
pub struct Redis {
    config: ferry_core::config::RedisReplay,
    conn: tokio::sync::Mutex<Option<BufReader<TcpStream>>>,
}

impl Redis {
    /// A client for `config`; connects on first use.
    pub fn new(config: ferry_core::config::RedisReplay) -> Self {
        Self {
            config,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ferry_core::config::RedisReplay {
        &self.config
    }

    async fn connect(&self) -> Result<BufReader<TcpStream>, String> {
        let stream = TcpStream::connect(&self.config.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut conn = BufReader::new(stream);
        if let Some(p) = &self.config.password {
            exchange(&mut conn, &[&[b"AUTH", p.as_bytes()]]).await?;
        }
        if self.config.db != 0 {
            exchange(
                &mut conn,
                &[&[b"SELECT", self.config.db.to_string().as_bytes()]],
            )
            .await?;
        }
        Ok(conn)
    }

    /// Sends `commands` as one pipeline and returns their replies, within the timeout.
    /// An error reply is an error.
    pub async fn pipeline(&self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, String> {
        let timeout = Duration::from_millis(self.config.timeout_ms.max(1));
        match tokio::time::timeout(timeout, self.pipeline_once(commands)).await {
            Ok(r) => r,
            Err(_) => {
                // A timed-out command may still be answered later: drop the link.
                *self.conn.lock().await = None;
                Err("timed out".into())
            }
        }
    }

    /// One command.
    pub async fn call(&self, args: &[&[u8]]) -> Result<Reply, String> {
        self.pipeline(&[args])
            .await?
            .pop()
            .ok_or_else(|| "no reply".to_owned())
    }

    async fn pipeline_once(&self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, String> {
        let mut guard = self.conn.lock().await;
        let mut reply = Err(String::new());
        if let Some(conn) = guard.as_mut() {
            reply = exchange(conn, commands).await;
        }
        if reply.is_err() {
            *guard = None;
            let conn = guard.insert(self.connect().await?);
            reply = exchange(conn, commands).await;
            if reply.is_err() {
                // The connection's state is unknown: start afresh next time.
                *guard = None;
            }
        }
        reply
    }
}

async fn exchange(
    conn: &mut BufReader<TcpStream>,
    commands: &[&[&[u8]]],
) -> Result<Vec<Reply>, String> {
    let mut buf = Vec::new();
    for args in commands {
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in *args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
    }
    conn.get_mut()
        .write_all(&buf)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut replies = Vec::with_capacity(commands.len());
    let mut refused = false;
    for _ in commands {
        match read_reply(conn, 0).await? {
            Ok(r) => replies.push(r),
            Err(()) => {
                refused = true;
                replies.push(Reply::Bulk(None));
            }
        }
    }
    if refused {
        return Err("Redis refused the command".into());
    }
    Ok(replies)
}

async fn line(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = (&mut *conn)
        .take(4096)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err("connection closed".into());
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn number(s: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "malformed reply".to_owned())
}

/// One reply read: `Ok(Err(()))` for an error reply (read completely).
type ReadReply<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Result<Reply, ()>, String>> + Send + 'a>>;

/// Reads one reply.
fn read_reply(conn: &mut BufReader<TcpStream>, depth: usize) -> ReadReply<'_> {
    Box::pin(async move {
        if depth > 4 {
            return Err("reply nested too deeply".into());
        }
        let l = line(conn).await?;
        let (kind, rest) = l.split_first().ok_or("empty reply")?;
        Ok(Ok(match kind {
            b'+' => Reply::Simple(rest.to_vec()),
            b'-' => return Ok(Err(())),
            b':' => Reply::Int(number(rest)?),
            b'_' => Reply::Bulk(None),
            b'$' => {
                let n = number(rest)?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let n = usize::try_from(n).map_err(|_| "malformed reply")?;
                    if n > MAX_BULK {
                        return Err("bulk reply too large".into());
                    }
                    let mut body = vec![0u8; n + 2];
                    conn.read_exact(&mut body)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    body.truncate(n);
                    Reply::Bulk(Some(body))
                }
            }
            b'*' => {
                let n = number(rest)?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let n = usize::try_from(n).map_err(|_| "malformed reply")?;
                    if n > MAX_ITEMS {
                        return Err("array reply too large".into());
                    }
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        match read_reply(conn, depth + 1).await? {
                            Ok(r) => items.push(r),
                            Err(()) => return Ok(Err(())),
                        }
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err("unsupported reply type".into()),
        }))
    })
}
