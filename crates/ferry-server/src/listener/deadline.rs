//! Per-connection deadlines while no request is being served. A connection is always in
//! one of three phases:
//!
//! - **head**: from the connection's start, or from the first byte after an idle
//!   period, until a request's header is complete. It must end within
//!   `header_read_timeout`: a client that sends its header one byte at a time
//!   (slowloris) is cut off however steadily it sends.
//! - **busy**: the router is serving a request. No deadline here; the request deadline
//!   (`limits.request_timeout`) is the router's.
//! - **idle**: a keep-alive connection between requests, bounded by `idle_timeout`.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection is idle,
//! so it cannot let a connection idle for longer than a header may take; the two bounds
//! are kept here instead, the way Go's `ReadHeaderTimeout` and `IdleTimeout` are.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head(Instant),
    Busy,
    Idle(Instant),
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request header did not arrive in time.
    Header,
    /// A keep-alive connection stayed idle too long.
    Idle,
}

/// The deadlines of one connection.
#[derive(Debug)]
pub struct Deadlines {
    phase: Mutex<Phase>,
    changed: Notify,
    header: Duration,
    idle: Duration,
}

impl Deadlines {
    /// A new connection: its first header is due within `header`.
    pub fn new(header: Duration, idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
            header,
            idle,
        })
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        let next = f(*phase);
        if next != *phase {
            *phase = next;
            // notify_one keeps a permit when nobody waits: a change between the watcher
            // reading the phase and waiting is never lost.
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: an idle connection starts reading a header.
    fn on_read(&self) {
        self.set(|p| match p {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    /// A request's header is complete and the router serves it, until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.set(|_| Phase::Busy);
        Busy(self.clone())
    }

    fn deadline(&self) -> Option<(Instant, Expired)> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Head(since) => Some((since + self.header, Expired::Header)),
            Phase::Idle(since) => Some((since + self.idle, Expired::Idle)),
            Phase::Busy => None,
        }
    }

    /// Resolves when the deadline of the current phase passes.
    pub async fn expired(&self) -> Expired {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some((at, which)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            if self.deadline().is_some_and(|(now_at, _)| now_at <= Instant::now()) {
                                return which;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in service; the connection turns idle when it drops.
#[derive(Debug)]
pub struct Busy(Arc<Deadlines>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(|_| Phase::Idle(Instant::now()));
    }
}

/// A connection's stream, telling its deadlines when bytes arrive.
#[derive(Debug)]
pub struct Watched<I> {
    inner: I,
    deadlines: Arc<Deadlines>,
}

impl<I> Watched<I> {
    /// Watches `inner` for `deadlines`.
    pub fn new(inner: I, deadlines: Arc<Deadlines>) -> Self {
        Self { inner, deadlines }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.deadlines.on_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn each_phase_has_its_deadline() {
        let d = Deadlines::new(HEADER, IDLE);
        let (at, which) = d.deadline().unwrap();
        assert_eq!(which, Expired::Header, "a new connection reads a header");
        // Bytes while reading a header do not extend its deadline.
        d.on_read();
        assert_eq!(d.deadline().unwrap().0, at);
        let busy = d.busy();
        assert_eq!(d.deadline(), None, "no deadline while serving");
        d.on_read();
        assert_eq!(d.deadline(), None, "body bytes do not start a header");
        drop(busy);
        let (idle_at, which) = d.deadline().unwrap();
        assert_eq!(which, Expired::Idle);
        assert!(idle_at > at, "the idle timeout is the longer one here");
        // The next request's first byte starts its header deadline.
        d.on_read();
        assert_eq!(d.deadline().unwrap().1, Expired::Header);
    }

    #[tokio::test]
    async fn the_watcher_follows_phase_changes() {
        let d = Deadlines::new(Duration::from_millis(50), Duration::from_secs(3600));
        let busy = d.busy();
        // Busy: no deadline, however long it takes.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), d.expired())
                .await
                .is_err()
        );
        drop(busy);
        // Idle for up to an hour, until a byte arrives while the watcher waits: the
        // header it starts is due 50 ms later.
        let reader = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            d.on_read();
        };
        let (which, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(30), d.expired()),
            reader
        );
        assert_eq!(which.ok(), Some(Expired::Header));
    }
}
