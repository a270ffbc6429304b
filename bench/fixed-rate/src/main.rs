//! A constant-rate HTTP/1.1 load generator: the latency figures of
//! `bench/compare.sh` and `bench/ab.sh`, and the million requests of the
//! memory case.
//!
//! With `--rate R`, request `i` is due at `start + i / R` whatever the
//! answers do (an open loop). A due request goes out on the first free
//! connection and its latency counts from the moment it was due, so a proxy
//! that stalls is charged for every request that waited behind the stall
//! (coordinated omission corrected, as wrk2 does). A timerfd releases the
//! due requests every `--tick` (100 µs by default, finer than tokio's
//! millisecond timer), so a latency includes up to one tick of waiting for
//! the release. Latencies go into an HDR histogram: nothing is kept per
//! request, so the tool never stops to grow a record of every request
//! (a load tool that does stalls at each reallocation, and the stall shows
//! as the tail of whatever it measures).
//!
//! With `--requests N` instead, the connections send N requests back to
//! back, each latency counted from its send.
//!
//! Prints one JSON object: requests, errors, statuses, seconds, rate,
//! `latency_us` (p50, p90, p99, p99.9, max) and, at a rate,
//! `release_lag_us`: how late the pacer released the requests, the tool's
//! own share of each latency.

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[derive(Parser)]
#[command(about = "Loads one URL at a fixed rate (or N requests back to back) over HTTP/1.1")]
struct Args {
    /// http://HOST:PORT/PATH
    url: Uri,
    /// Requests a second, sent on schedule whatever the answers do
    #[arg(
        long,
        short = 'q',
        conflicts_with = "requests",
        required_unless_present = "requests"
    )]
    rate: Option<f64>,
    /// How long to send at `--rate` (10s, 500ms, ...)
    #[arg(long, short = 'z', value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Send this many requests back to back instead of at a rate
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Connections, kept alive
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// A request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// A request not answered in this time counts as an error
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// How often due requests are released at `--rate`
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    tick: Duration,
    /// Also report the slowest latency of each window of this length
    /// (by due time): where in the run the tail came from
    #[arg(long, value_parser = parse_duration)]
    windows: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (10s, 500ms, 100us)"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        _ => return Err(format!("{s:?}: the unit is one of s, ms, us")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// What every request carries.
struct Target {
    authority: String,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    fn new(url: &Uri, headers: &[String]) -> Result<Self, String> {
        if url.scheme_str() != Some("http") {
            return Err(format!("{url}: only http:// URLs"));
        }
        let authority = url
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        let headers = headers
            .iter()
            .map(|h| {
                let (name, value) = h
                    .split_once(':')
                    .ok_or_else(|| format!("header {h:?}: expected `Name: value`"))?;
                let name = HeaderName::try_from(name.trim()).map_err(|e| format!("{h:?}: {e}"))?;
                let value =
                    HeaderValue::try_from(value.trim()).map_err(|e| format!("{h:?}: {e}"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        let path = url.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Target {
            authority,
            path,
            headers,
        })
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::get(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .body(Empty::new())
            .expect("the URL was parsed");
        for (name, value) in &self.headers {
            req.headers_mut().append(name.clone(), value.clone());
        }
        req
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// The run's shared state (one thread).
struct Load {
    /// Open loop: the due times the pacer has released, oldest first.
    due: RefCell<VecDeque<Instant>>,
    released: Notify,
    /// Open loop: the pacer has released its last request.
    paced_out: Cell<bool>,
    /// Closed loop: requests still to send.
    left: Option<Cell<u64>>,
    latency_us: RefCell<Histogram<u64>>,
    /// Open loop: how late the pacer released each request (the tool's own
    /// share of each latency, up to a tick plus its wake-up).
    release_lag_us: RefCell<Histogram<u64>>,
    statuses: RefCell<BTreeMap<u16, u64>>,
    errors: RefCell<BTreeMap<String, u64>>,
    /// With `--windows`: the run's start, the window length and each
    /// window's slowest latency.
    windows: Option<(Instant, Duration, RefCell<Vec<u64>>)>,
}

impl Load {
    /// When the next request is (was) due; `None` when there are no more.
    async fn next(&self) -> Option<Instant> {
        if let Some(left) = &self.left {
            let n = left.get().checked_sub(1)?;
            left.set(n);
            return Some(Instant::now());
        }
        loop {
            if let Some(due) = self.due.borrow_mut().pop_front() {
                return Some(due);
            }
            if self.paced_out.get() {
                return None;
            }
            self.released.notified().await;
        }
    }

    fn answered(&self, due: Instant, status: u16) {
        let us = due.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
        self.latency_us.borrow_mut().saturating_record(us.max(1));
        if let Some((start, every, slowest)) = &self.windows {
            let i = (due.saturating_duration_since(*start).as_nanos() / every.as_nanos()) as usize;
            let mut slowest = slowest.borrow_mut();
            if slowest.len() <= i {
                slowest.resize(i + 1, 0);
            }
            slowest[i] = slowest[i].max(us);
        }
        *self.statuses.borrow_mut().entry(status).or_default() += 1;
    }

    fn failed(&self, why: String) {
        *self.errors.borrow_mut().entry(why).or_default() += 1;
    }
}

/// A timerfd on the runtime, firing every `tick`: it paces the requests
/// finer than tokio's millisecond timer.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    fn every(tick: Duration) -> std::io::Result<AsyncFd<Timer>> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        let every = TimeSpec::from_duration(tick);
        timer.set(Expiration::Interval(every), TimerSetTimeFlags::empty())?;
        // SAFETY: `Timer` owns the timerfd for as long as the `AsyncFd`
        // holds it and always names that same descriptor.
        unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(std::io::Error::from)
    }
}

/// Releases request `i` at `start + i / rate` for `duration`.
async fn pace(
    load: Rc<Load>,
    timer: AsyncFd<Timer>,
    start: Instant,
    rate: f64,
    duration: Duration,
) {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut i = 0;
    while i < total {
        let mut ready = match timer.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                // Ends the run early; the report shows why.
                load.failed(format!("the pacing timer failed: {e}"));
                break;
            }
        };
        // The expiry count is not needed: the clock says what is due.
        let _ = ready.get_inner().0.wait();
        ready.clear_ready();
        let now = Instant::now();
        while i < total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if due > now {
                break;
            }
            let lag = now.duration_since(due).as_micros();
            let lag = lag.try_into().unwrap_or(u64::MAX);
            load.release_lag_us.borrow_mut().saturating_record(lag);
            load.due.borrow_mut().push_back(due);
            load.released.notify_one();
            i += 1;
        }
    }
    load.paced_out.set(true);
    load.released.notify_waiters();
}

/// One connection's loop: a request at a time, reconnecting after an error.
async fn connection(
    load: Rc<Load>,
    target: Rc<Target>,
    sender: SendRequest<Empty<Bytes>>,
    timeout: Duration,
) {
    let mut sender = Some(sender);
    while let Some(due) = load.next().await {
        let exchange = async {
            let s = match &mut sender {
                Some(s) if !s.is_closed() => s,
                _ => sender.insert(target.connect().await?),
            };
            s.ready().await.map_err(|e| e.to_string())?;
            let resp = s
                .send_request(target.request())
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?;
            Ok::<_, String>(status)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(status)) => load.answered(due, status),
            Ok(Err(why)) => {
                load.failed(why);
                sender = None;
            }
            Err(_) => {
                load.failed(format!("no answer in {timeout:?}"));
                sender = None;
            }
        }
    }
}

/// Microseconds, from 1 µs to an hour, to three significant digits.
fn micros() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    let target = Rc::new(Target::new(&args.url, &args.headers)?);
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let timer = match args.rate {
        Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
            return Err(format!("--rate {rate}: must be above 0"));
        }
        Some(_) if args.tick.is_zero() => return Err("--tick must be above 0".into()),
        Some(_) => Some(Timer::every(args.tick).map_err(|e| format!("a pacing timer: {e}"))?),
        None => None,
    };
    // Every connection is open before the first request is due.
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(target.connect().await?);
    }
    let start = Instant::now();
    let start_monotonic = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9);
    let windows = args.windows.filter(|w| !w.is_zero()).map(|every| {
        let n = (args.duration.as_nanos() / every.as_nanos()) as usize + 1;
        (start, every, RefCell::new(Vec::with_capacity(n)))
    });
    let load = Rc::new(Load {
        due: RefCell::default(),
        released: Notify::new(),
        paced_out: Cell::new(false),
        left: args.requests.map(Cell::new),
        latency_us: RefCell::new(micros()),
        release_lag_us: RefCell::new(micros()),
        statuses: RefCell::default(),
        errors: RefCell::default(),
        windows,
    });
    if let (Some(rate), Some(timer)) = (args.rate, timer) {
        tokio::task::spawn_local(pace(load.clone(), timer, start, rate, args.duration));
    }
    let conns: Vec<_> = senders
        .into_iter()
        .map(|s| {
            tokio::task::spawn_local(connection(load.clone(), target.clone(), s, args.timeout))
        })
        .collect();
    for c in conns {
        c.await.map_err(|e| e.to_string())?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let h = load.latency_us.borrow();
    let errors = load.errors.borrow();
    let statuses = load.statuses.borrow();
    let q = |p: f64| h.value_at_quantile(p);
    let lag = load.release_lag_us.borrow();
    let release_lag = (!lag.is_empty()).then(|| {
        serde_json::json!({
            "p50": lag.value_at_quantile(0.5), "p99": lag.value_at_quantile(0.99), "max": lag.max(),
        })
    });
    let windows = load.windows.as_ref().map(|(_, every, slowest)| {
        serde_json::json!({
            "ms": every.as_secs_f64() * 1e3,
            // To line the windows up with `perf record -k CLOCK_MONOTONIC`.
            "start_monotonic_s": start_monotonic,
            "slowest_us": *slowest.borrow(),
        })
    });
    Ok(serde_json::json!({
        "requests": h.len(),
        "errors": errors.values().sum::<u64>(),
        "error_kinds": *errors,
        "statuses": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "seconds": seconds,
        "rate": h.len() as f64 / seconds,
        "target_rate": args.rate,
        "connections": args.connections,
        "tick_us": args.rate.map(|_| args.tick.as_micros() as u64),
        "latency_us": {
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99.9": q(0.999), "max": h.max(),
        },
        "release_lag_us": release_lag,
        "windows": windows,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match tokio::task::LocalSet::new().block_on(&rt, run(args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fixed-rate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An HTTP/1.1 server answering each request at once, except that
    /// requests arriving between `stall.0` and `stall.1` after it started
    /// wait until `stall.1`.
    async fn server(stall: Option<(Duration, Duration)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        tokio::task::spawn_local(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::task::spawn_local(async move {
                    let mut buf = vec![0; 4096];
                    // The client sends one small request at a time.
                    while let Ok(1..) = s.read(&mut buf).await {
                        if let Some((from, to)) = stall {
                            let now = start.elapsed();
                            if (from..to).contains(&now) {
                                tokio::time::sleep(to - now).await;
                            }
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/")
    }

    fn load(stall: Option<(Duration, Duration)>, args: &[&str]) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let url = server(stall).await;
            let args = Args::parse_from(["fixed-rate"].iter().chain(args).chain([&url.as_str()]));
            run(args).await.unwrap()
        })
    }

    #[test]
    fn a_stall_is_charged_to_every_request_due_during_it() {
        let ms = Duration::from_millis;
        let r = load(
            Some((ms(100), ms(200))),
            &["-q", "1000", "-z", "400ms", "-c", "4"],
        );
        assert_eq!(r["requests"], 400, "{r}");
        assert_eq!(r["statuses"]["200"], 400, "{r}");
        // About 100 of the 400 requests were due during the stall: counted
        // from when each was due, a tenth of all took 20 ms or more (counted
        // from each send, only the 4 on the wire when it began would).
        let lat = &r["latency_us"];
        assert!(lat["p90"].as_u64().unwrap() >= 20_000, "{r}");
        assert!(lat["max"].as_u64().unwrap() >= 80_000, "{r}");
    }

    #[test]
    fn back_to_back_sends_exactly_n_requests() {
        let r = load(None, &["-n", "250", "-c", "8", "-H", "x-a: 1"]);
        assert_eq!(r["requests"], 250, "{r}");
        assert_eq!(r["statuses"]["200"], 250, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("1x").unwrap_err().contains("unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
