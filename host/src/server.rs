//! The listener: HTTP/1.1 connections served by hyper on tokio.

use crate::live::Live;
use crate::timer::LazyTimer;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A gateway accepting connections; dropping it does not stop it, `shutdown` does.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin API's address, when `server.admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    pub live: Arc<Live>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The admin API outlives the drain, so `/readyz` can say it is on.
    admin: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    /// Stops accepting (new connections are refused), lets requests in
    /// flight finish and closes idle keep-alive connections, waiting at most
    /// `server.shutdown_timeout`; connections still busy then are dropped.
    pub async fn shutdown(self) {
        self.live.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some((stop, task)) = self.admin {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

/// Binds the listen address (and the admin API's, when set) and serves.
pub async fn start(live: Arc<Live>) -> std::io::Result<Running> {
    let server = live.gateway().server.clone();
    let listener = TcpListener::bind(server.listen).await?;
    let admin = match server.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("admin_listen {addr}: {e}")))?,
        ),
        None => None,
    };
    let mut running = serve(live.clone(), listener);
    if let Some(admin) = admin {
        running.admin_addr = admin.local_addr().ok();
        let (stop, stopped) = watch::channel(false);
        running.admin = Some((stop, serve_admin(live, admin, stopped)));
    }
    Ok(running)
}

/// The admin API's accept loop, until `stopped`.
fn serve_admin(
    live: Arc<Live>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let live = live.clone();
            let svc = service_fn(move |req| {
                let live = live.clone();
                async move { Ok::<_, std::convert::Infallible>(crate::admin::handle(&live, req).await) }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// Serves on a listener that is already bound.
/// Settings of the listener itself (address, limits, shutdown timeout) are
/// read once, here; a reload cannot change them.
pub fn serve(live: Arc<Live>, listener: TcpListener) -> Running {
    let gateway = live.gateway();
    let addr = listener.local_addr().unwrap_or(gateway.server.listen);
    let (stop, mut stopped) = watch::channel(false);
    let mut http = http1::Builder::new();
    // One buffer per message, not a queue of buffers for writev: about 2 %
    // fewer instructions a request for the small bodies APIs mostly carry,
    // and no measurable loss on 64 KiB and 1 MiB bodies.
    http.header_read_timeout(gateway.server.header_read_timeout)
        .writev(false)
        .max_buf_size(gateway.server.max_header_size)
        .max_headers(gateway.server.max_headers);
    let grace = gateway.server.shutdown_timeout;
    let served = live.clone();
    let task = tokio::spawn(async move {
        let connections = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let live = served.clone();
            // One timer for the connection's header reads and upstream waits.
            let timer = LazyTimer::default();
            let client = crate::proxy::Peer::new(peer, timer.clone());
            let conn = connections.watch(http.clone().timer(timer).serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    // Each request runs to its end on the gateway it started on.
                    let gw = live.gateway();
                    let client = client.clone();
                    async move { Ok::<_, std::convert::Infallible>(gw.handle(req, client).await) }
                }),
            ));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                }
            });
        }
        // The listener goes now, so new connections are refused at once.
        drop(listener);
        let open = connections.count();
        if open > 0 {
            tracing::info!(connections = open, "waiting for requests in flight");
        }
        if tokio::time::timeout(grace, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?grace,
                "requests still in flight at the shutdown timeout were cut off"
            );
        }
    });
    Running {
        addr,
        admin_addr: None,
        live,
        stop,
        task,
        admin: None,
    }
}
