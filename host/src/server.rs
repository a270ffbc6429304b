//! The listener: HTTP/1.1 connections served by hyper on tokio.

use crate::gateway::Gateway;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A gateway accepting connections; dropping it does not stop it, `shutdown` does.
pub struct Running {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting (new connections are refused), lets requests in
    /// flight finish and closes idle keep-alive connections, waiting at most
    /// `server.shutdown_timeout`; connections still busy then are dropped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds the listen address and serves.
pub async fn start(gateway: Arc<Gateway>) -> std::io::Result<Running> {
    let listener = TcpListener::bind(gateway.server.listen).await?;
    Ok(serve(gateway, listener))
}

/// Serves on a listener that is already bound.
pub fn serve(gateway: Arc<Gateway>, listener: TcpListener) -> Running {
    let addr = listener.local_addr().unwrap_or(gateway.server.listen);
    let (stop, mut stopped) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(gateway.server.header_read_timeout)
        .max_buf_size(gateway.server.max_header_size)
        .max_headers(gateway.server.max_headers);
    let grace = gateway.server.shutdown_timeout;
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
            let gw = gateway.clone();
            let conn = connections.watch(http.serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, std::convert::Infallible>(gw.handle(req, peer).await) }
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
    Running { addr, stop, task }
}
