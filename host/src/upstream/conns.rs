//! Keep-alive HTTP/1.1 connections to one target, on hyper's connection
//! API: a stack of idle connections, most recently used on top, that a
//! response gives its connection back to when its body has been read.
//!
//! Each connection is driven by its own task (hyper's `Connection`); a
//! request checks one out, sends, and the response body returns it when it
//! ends. Nothing else sits between a request and its connection: no pool
//! key to hash, no checkout future, no task per returned connection.

use crate::error::Body;
use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long the kernel waits on a silent connection before probing it.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Settings of a target's connections (from the upstream's config).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unresolvable, timed out).
    Connect(std::io::Error),
    /// The connection failed while sending or before the response head.
    Failed(hyper::Error),
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// One target's connections.
pub struct Connections {
    authority: Authority,
    /// The `Host` a request to this target carries: the authority, without
    /// the port when it is 80.
    host: HeaderValue,
    settings: Settings,
    idle: Mutex<Vec<Idle>>,
}

impl Connections {
    pub fn new(authority: Authority, settings: Settings) -> Arc<Connections> {
        let host = match authority.port_u16() {
            Some(80) => authority.host(),
            _ => authority.as_str(),
        };
        // A parsed authority holds only URI characters, all valid in a header value.
        let host = HeaderValue::from_str(host).expect("authority"); // ok: see above
        let conns = Arc::new(Connections {
            authority,
            host,
            settings,
            idle: Mutex::new(Vec::new()),
        });
        tokio::spawn(close_expired(Arc::downgrade(&conns)));
        conns
    }

    /// Sends `req` (its URI in origin form, `/path?query`) on an idle
    /// connection or a new one. A request that a reused connection could
    /// not take (the target had just closed it) goes on another. `now` is
    /// the caller's reading of the clock as it sends (one read fewer).
    /// The request comes boxed: the layers on its way here each hold it
    /// in their futures, and a box moves as one word, not 240 bytes.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Box<Request<Body>>,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, SendError> {
        req.headers_mut().insert(HOST, self.host.clone());
        loop {
            let (mut sender, reused) = match self.checkout(now) {
                Some(s) => (s, true),
                // Boxed and called through a vtable: connecting is rare, and
                // its futures (resolving, connecting, hyper's handshake) would
                // otherwise sit inside every request's future and its polls'
                // stack frames.
                None => {
                    let connect: Pin<Box<dyn Future<Output = _> + Send + '_>> =
                        Box::pin(self.connect());
                    (connect.await?, false)
                }
            };
            match sender.try_send_request(*req).await {
                Ok(resp) => {
                    let back = Some((self.clone(), sender));
                    return Ok(resp.map(|inner| UpstreamBody { inner, back }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => *req = unsent,
                    _ => return Err(SendError::Failed(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that can take a request;
    /// closed and expired ones met on the way are dropped.
    fn checkout(&self, now: Instant) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.sender.is_ready()
                && now.saturating_duration_since(c.since) < self.settings.idle_timeout
            {
                return Some(c.sender);
            }
        }
        None
    }

    /// Keeps a connection whose response has ended, for the next request.
    fn checkin(self: &Arc<Self>, mut sender: SendRequest<Body>) {
        if sender.is_ready() {
            self.keep(sender);
        } else if !sender.is_closed() {
            // The connection task has not yet seen the end of the response:
            // wait for it off the request's path.
            let conns = self.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    conns.keep(sender);
                }
            });
        }
    }

    fn keep(&self, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.settings.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = tokio::time::timeout(self.settings.connect_timeout, self.open())
            .await
            .map_err(|_| {
                SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connect timed out after {:?}",
                        self.settings.connect_timeout
                    ),
                ))
            })?
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        // One buffer per message, as on the connections from clients (server.rs).
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Failed)?;
        let target = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%target, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A TCP connection to the first of the authority's addresses that
    /// accepts one.
    async fn open(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in tokio::net::lookup_host(self.authority.as_str()).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.authority),
            )
        }))
    }
}

/// Closes connections idle past the timeout, while the target exists.
async fn close_expired(conns: Weak<Connections>) {
    let every = match conns.upgrade() {
        Some(c) => (c.settings.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(conns) = conns.upgrade() else { return };
        let timeout = conns.settings.idle_timeout;
        let mut idle = conns.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
    }
}

/// An upstream response's body. Its connection goes back to the target's
/// idle stack once the body has been read to its end; a body dropped before
/// then takes its connection with it, as the rest of that response is
/// still on the wire.
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<(Arc<Connections>, SendRequest<Body>)>,
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some((conns, sender)) = self.back.take() {
            conns.checkin(sender);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body known to be empty is never polled to its end.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
