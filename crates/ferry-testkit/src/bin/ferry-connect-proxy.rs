//! `ferry-connect-proxy --map HOST:PORT=127.0.0.1:PORT ...`: the test kit's CONNECT proxy
//! as a process, for tests written in other languages (the standard-client tests in
//! `clients/`), which point a client at it with `HTTPS_PROXY`. It tunnels only the
//! mapped targets (every other one gets 403), prints `listening on http://127.0.0.1:PORT`
//! once ready, then `CONNECT <target>` for each tunnel asked for, and runs until killed.

use std::collections::HashMap;

use anyhow::{Context, bail};
use ferry_testkit::proxy::ConnectProxy;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut map = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg != "--map" {
            bail!("usage: ferry-connect-proxy --map HOST:PORT=127.0.0.1:PORT ...");
        }
        let pair = args.next().context("--map needs HOST:PORT=ADDRESS")?;
        let (from, to) = pair
            .split_once('=')
            .context("--map needs HOST:PORT=ADDRESS")?;
        let to: std::net::SocketAddr = to.parse().context("the address must be IP:PORT")?;
        if !to.ip().is_loopback() {
            bail!("the proxy tunnels to loopback addresses only");
        }
        map.insert(from.to_owned(), to.to_string());
    }
    if map.is_empty() {
        bail!("usage: ferry-connect-proxy --map HOST:PORT=127.0.0.1:PORT ...");
    }
    let proxy = ConnectProxy::start_mapped(map).await?;
    println!("listening on {}", proxy.url);
    let mut reported = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let targets = proxy.targets();
        for t in targets.iter().skip(reported) {
            println!("CONNECT {t}");
        }
        reported = targets.len();
    }
}
