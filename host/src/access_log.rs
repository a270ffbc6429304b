//! The access log: one line per request, human-readable or JSON, written by
//! its own thread so the request path only formats a line and hands it over
//! (lines are dropped, and counted, if the writer falls behind).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Lines that may wait for the writer.
const BACKLOG: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What one request did, gathered as it goes.
#[derive(Debug, Default)]
pub struct Trace {
    /// The upstream target it was sent to.
    pub target: Option<http::uri::Authority>,
    pub upstream_time: Option<Duration>,
    /// Each plugin call: plugin, phase (`request` or `response`), time.
    pub plugins: Vec<(Arc<str>, &'static str, Duration)>,
    /// The plugin that answered instead of the upstream.
    pub answered_by: Option<Arc<str>>,
}

/// One line's fields.
pub struct Record<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    pub client: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    /// The response body's length when known up front (Content-Length).
    pub bytes: Option<u64>,
    pub total: Duration,
    pub trace: &'a Trace,
}

pub struct AccessLog {
    tx: SyncSender<String>,
    format: Format,
    dropped: AtomicU64,
}

impl AccessLog {
    /// `stdout`, or a file appended to (created if missing).
    pub fn open(target: &str, format: Format) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = if target == "stdout" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(target)?,
            )
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(BACKLOG);
        std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut ok = out.write_all(line.as_bytes()).is_ok();
                    // Write what else is waiting, then flush once.
                    while let Ok(more) = rx.try_recv() {
                        ok &= out.write_all(more.as_bytes()).is_ok();
                    }
                    if !(ok && out.flush().is_ok()) {
                        tracing::warn!("the access log cannot be written");
                    }
                }
            })?;
        Ok(AccessLog {
            tx,
            format,
            dropped: AtomicU64::new(0),
        })
    }

    pub fn write(&self, r: &Record<'_>) {
        let line = match self.format {
            Format::Json => json_line(r),
            Format::Text => text_line(r),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "the access log writer is behind; lines dropped"
                );
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn json_line(r: &Record<'_>) -> String {
    let plugins: Vec<serde_json::Value> = r
        .trace
        .plugins
        .iter()
        .map(
            |(p, phase, d)| serde_json::json!({ "plugin": &**p, "phase": phase, "us": micros(*d) }),
        )
        .collect();
    let mut line = serde_json::json!({
        "time": humantime::format_rfc3339_micros(r.time).to_string(),
        "request_id": r.request_id,
        "client": r.client.to_string(),
        "method": r.method,
        "path": r.path,
        "route": r.route,
        "target": r.trace.target.as_ref().map(|a| a.as_str()),
        "status": r.status,
        "bytes": r.bytes,
        "total_us": micros(r.total),
        "upstream_us": r.trace.upstream_time.map(micros),
        "plugins": plugins,
        "answered_by": r.trace.answered_by.as_deref(),
    })
    .to_string();
    line.push('\n');
    line
}

fn text_line(r: &Record<'_>) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let plugins: Vec<String> = r
        .trace
        .plugins
        .iter()
        .map(|(p, phase, d)| format!("{p}:{phase}:{}us", micros(*d)))
        .collect();
    format!(
        "{} {} {} \"{} {}\" {} route={} target={} bytes={} total_us={} upstream_us={} plugins={} answered_by={}\n",
        humantime::format_rfc3339_micros(r.time),
        r.request_id,
        r.client,
        r.method,
        r.path.escape_debug(),
        r.status,
        r.route.unwrap_or("-"),
        dash(r.trace.target.as_ref().map(|a| a.to_string())),
        dash(r.bytes.map(|b| b.to_string())),
        micros(r.total),
        dash(r.trace.upstream_time.map(|d| micros(d).to_string())),
        if plugins.is_empty() {
            "-".to_owned()
        } else {
            plugins.join(",")
        },
        r.trace.answered_by.as_deref().unwrap_or("-"),
    )
}
