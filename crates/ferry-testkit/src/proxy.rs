//! A tiny HTTP CONNECT proxy on 127.0.0.1:0 for tests: it tunnels a CONNECT to the target
//! it names, records the targets, and refuses anything else with 405. A *mapped* proxy
//! tunnels only the host names it was given, each to a loopback address (how a client
//! that must reach `sts.<test domain>:443` by name gets to a test server, with no DNS and
//! no way out to the internet); any other target is refused with 403.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
#[derive(Debug)]
pub struct ConnectProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

/// Where CONNECT targets go: anywhere they name, or only to the mapped addresses.
type Routes = Option<Arc<HashMap<String, String>>>;

impl ConnectProxy {
    /// Starts a proxy that tunnels to whatever target a CONNECT names.
    pub async fn start() -> std::io::Result<Self> {
        Self::launch(None).await
    }

    /// Starts a proxy that tunnels only the `host:port` targets in `map`, each to the
    /// `ip:port` it maps to, and refuses every other target (403).
    pub async fn start_mapped(map: HashMap<String, String>) -> std::io::Result<Self> {
        Self::launch(Some(Arc::new(map))).await
    }

    async fn launch(routes: Routes) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, log.clone(), routes.clone()));
            }
        });
        Ok(Self { url, seen })
    }

    /// The `host:port` targets of every CONNECT so far.
    pub fn targets(&self) -> Vec<String> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

async fn tunnel(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>, routes: Routes) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match client.read(&mut byte).await {
            Ok(1) => head.extend_from_slice(&byte),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let target = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned);
    let Some(target) = target else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if let Ok(mut v) = seen.lock() {
        v.push(target.clone());
    }
    let address = match &routes {
        None => target,
        Some(map) => match map.get(&target) {
            Some(a) => a.clone(),
            None => {
                let _ = client
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
        },
    };
    let Ok(mut upstream) = TcpStream::connect(&address).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
