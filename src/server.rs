//! The HTTP side: the admission router (served over TLS), the admin router (plain HTTP), and the
//! connection loop that serves them with keep-alive, HTTP/1.1 and HTTP/2, timeouts and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::admission::{self, Reviewed};
use crate::config::{Config, DigestPolicy};
use crate::digests::run::DigestRequests;
use crate::digests::{DigestKey, DigestSnapshot};
use crate::metrics::Metrics;
use crate::rewrite::{Decision, SkipReason};
use crate::rules::RuleSnapshot;

/// Path of the mutating webhook.
pub const MUTATE_PATH: &str = "/mutate";

/// State shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force; swapped whole on reload.
    pub config: Arc<ArcSwap<Config>>,
    /// Metrics.
    pub metrics: Metrics,
    /// What is known of the ECR rules; swapped whole by the refresher.
    pub rules: Arc<ArcSwap<RuleSnapshot>>,
    /// Readiness: true once serving, false again when shutting down.
    pub ready: Arc<AtomicBool>,
    /// What was admitted since the last summary line.
    pub activity: Arc<Activity>,
    /// What is known of pinned digests in the cache; swapped whole by the digest checker.
    pub digests: Arc<ArcSwap<DigestSnapshot>>,
    /// Where digests the webhook needs an answer for go; `None` when no checker runs.
    pub digest_requests: Option<DigestRequests>,
}

impl AppState {
    /// State for a configuration, not yet ready.
    pub fn new(config: Config, metrics: Metrics) -> Self {
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            rules: Arc::new(ArcSwap::from_pointee(RuleSnapshot::unknown())),
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            activity: Arc::new(Activity::new(SUMMARY_INTERVAL)),
            digests: Arc::new(ArcSwap::from_pointee(DigestSnapshot::EMPTY)),
            digest_requests: None,
        }
    }
}

/// How often, at most, the `info` summary of admissions is logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_mins(1);

/// Counts of admissions between two `info` summary lines.
///
/// A log line per request costs more than the admission itself (a third of the throughput on
/// 2 cores), so each request is logged at `debug` and `info` gets one line per interval in which
/// something was admitted. The line is written by the first request after the interval ends:
/// no task, and nothing when nothing happens.
#[derive(Debug)]
pub struct Activity {
    since: Instant,
    interval: Duration,
    /// Nanoseconds from `since` to the start of the current interval.
    window_start: AtomicU64,
    requests: AtomicU64,
    patched: AtomicU64,
    rewritten: AtomicU64,
}

/// One interval's counts, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Length of the interval.
    pub elapsed: Duration,
    /// Requests answered with an AdmissionReview.
    pub requests: u64,
    /// Requests answered with a patch.
    pub patched: u64,
    /// Images rewritten.
    pub rewritten: u64,
}

impl Activity {
    /// Counts from now on, summarised every `interval` at most.
    pub fn new(interval: Duration) -> Self {
        Self {
            since: Instant::now(),
            interval,
            window_start: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            patched: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
        }
    }

    /// Counts one request at `now`; returns the summary to log when `now` ends an interval.
    pub fn count(&self, now: Instant, patched: bool, rewritten: u64) -> Option<Summary> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if patched {
            self.patched.fetch_add(1, Ordering::Relaxed);
        }
        self.rewritten.fetch_add(rewritten, Ordering::Relaxed);
        let now =
            u64::try_from(now.saturating_duration_since(self.since).as_nanos()).unwrap_or(u64::MAX);
        let start = self.window_start.load(Ordering::Relaxed);
        let elapsed = Duration::from_nanos(now.saturating_sub(start));
        if elapsed < self.interval {
            return None;
        }
        // One request wins the interval and logs it; counts racing with the swap land in the
        // next summary.
        self.window_start
            .compare_exchange(start, now, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(Summary {
            elapsed,
            requests: self.requests.swap(0, Ordering::Relaxed),
            patched: self.patched.swap(0, Ordering::Relaxed),
            rewritten: self.rewritten.swap(0, Ordering::Relaxed),
        })
    }
}

/// Limits of the admission router.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted; larger ones get 413.
    pub body_limit: usize,
    /// Deadline for reading and answering one request (below the webhook's `timeoutSeconds`).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // An UPDATE carries object and oldObject, each up to the 1.5 MiB etcd allows.
            body_limit: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(8),
        }
    }
}

/// The admission router: `POST /mutate`.
///
/// The body limit and the deadline are applied by the handler rather than by layers: a layer
/// wraps the route in a service that axum clones, boxed, for every request.
pub fn webhook_router(state: AppState, limits: Limits) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        // axum clones the state for every request: one reference count to bump rather than
        // one per metric handle, which both worker threads would fight over.
        .with_state(Arc::new(Webhook { state, limits }))
}

/// The admission route's state: the shared state and the limits.
struct Webhook {
    state: AppState,
    limits: Limits,
}

/// The admin router: `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Reads the body within the limits, then reviews it. A body announced larger than the limit is
/// refused before any of it is read; one that passes the limit as it arrives is refused then.
/// The deadline bounds reading the body, the only wait: the review itself does not wait.
async fn mutate(State(hook): State<Arc<Webhook>>, request: Request) -> Response {
    let limits = hook.limits;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limits.body_limit as u64) {
        return too_large();
    }
    let read = Limited::new(request.into_body(), limits.body_limit).collect();
    let body = match tokio::time::timeout(limits.request_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            debug!(error = %e, "cannot read the request body");
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            )
                .into_response();
        }
        Err(_) => {
            warn!(timeout = ?limits.request_timeout, "request not answered in time");
            return (
                StatusCode::REQUEST_TIMEOUT,
                "request not completed in time\n",
            )
                .into_response();
        }
    };
    answer(&hook.state, &body)
}

fn too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response()
}

/// Reviews a request body and answers it, counting and logging what was done.
fn answer(state: &AppState, body: &Bytes) -> Response {
    let started = Instant::now();
    let config = state.config.load();
    let rules = state.rules.load();
    let digests = state.digests.load();
    let response = match admission::review_with(&config, &rules, &digests, body) {
        Ok(reviewed) => {
            record(&state.metrics, &state.activity, started, &reviewed);
            if let Some(requests) = &state.digest_requests {
                ask_about_digests(requests, &config, &reviewed);
            }
            let bytes = reviewed.response.into_review().to_vec();
            ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(unreadable) => {
            state
                .metrics
                .admission
                .requests
                .with_label_values(&[admission::Outcome::Invalid.as_str()])
                .inc();
            warn!(error = %unreadable, "unreadable admission request");
            (StatusCode::BAD_REQUEST, format!("{unreadable}\n")).into_response()
        }
    };
    state
        .metrics
        .admission
        .duration
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Hands every pinned digest of the request to the checker, without waiting: those not known to
/// be cached so that they are checked, the cached ones so that they stay remembered and are
/// checked again when their answer ages.
fn ask_about_digests(requests: &DigestRequests, config: &Config, reviewed: &Reviewed<'_>) {
    if config.digests != DigestPolicy::WhenCached {
        return;
    }
    for image in &reviewed.plan.images {
        let key = match &image.decision {
            Decision::Skip(SkipReason::DigestNotCached { key, .. }) => Some(key.clone()),
            Decision::Rewrite(to) if image.image.contains('@') => {
                DigestKey::of_rewritten(&config.registry_host, to)
            }
            _ => None,
        };
        if let Some(key) = key {
            requests.ask(key);
        }
    }
}

/// Counts and logs one reviewed request, never the object: the request and the decision for each
/// image at `debug`, and the periodic summary at `info`.
fn record(metrics: &Metrics, activity: &Activity, now: Instant, reviewed: &Reviewed<'_>) {
    metrics
        .admission
        .requests
        .with_label_values(&[reviewed.outcome.as_str()])
        .inc();
    let uid = &reviewed.response.uid;
    let (ns, name, dry_run) = (&reviewed.namespace, &reviewed.name, reviewed.dry_run);
    if let Some(skip) = &reviewed.plan.skipped {
        debug!(uid, ns, name, reason = skip.kind(), "pod left alone");
    }
    if reviewed.outcome == admission::Outcome::Invalid {
        warn!(uid, "invalid admission request");
    }
    let mut rewritten = 0usize;
    let mut counts = ImageCounts::default();
    for image in &reviewed.plan.images {
        let decision = match &image.decision {
            Decision::Rewrite(_) => {
                rewritten += 1;
                "rewritten"
            }
            Decision::Skip(reason) => reason.kind(),
        };
        counts.add(metrics, image.registry, decision);
        // Formatting a line costs more than the rewrite itself, and a line per image multiplies
        // the log volume by the pod's size: the per-image detail is for debugging.
        match &image.decision {
            Decision::Rewrite(to) => debug!(
                uid, ns, name, dry_run, container = %image.container, from = %image.image, to = %to,
                "image rewritten"
            ),
            Decision::Skip(reason) => debug!(
                uid, ns, name, dry_run, container = %image.container, image = %image.image,
                reason = reason.kind(), "image left unchanged"
            ),
        }
    }
    counts.flush(metrics);
    let patched = reviewed.outcome == admission::Outcome::Patched;
    debug!(
        uid,
        ns,
        name,
        dry_run,
        outcome = reviewed.outcome.as_str(),
        rewritten,
        unchanged = reviewed.plan.images.len() - rewritten,
        "admission reviewed"
    );
    // Images of a workload preview are not rewritten by this request.
    let rewritten = if patched {
        u64::try_from(rewritten).unwrap_or(u64::MAX)
    } else {
        0
    };
    if let Some(summary) = activity.count(now, patched, rewritten) {
        info!(
            seconds = summary.elapsed.as_secs(),
            requests = summary.requests,
            patched = summary.patched,
            images_rewritten = summary.rewritten,
            "admissions since the last summary"
        );
    }
}

/// Images of one request counted by registry and decision, so that each counter is looked up
/// (labels hashed, the family locked) once per request rather than once per image: the images
/// of a Pod mostly share both.
#[derive(Default)]
struct ImageCounts<'a> {
    groups: [(&'a str, &'static str, u64); 4],
    len: usize,
}

impl<'a> ImageCounts<'a> {
    fn add(&mut self, metrics: &Metrics, registry: &'a str, decision: &'static str) {
        if let Some(group) = self.groups[..self.len]
            .iter_mut()
            .find(|(r, d, _)| *r == registry && *d == decision)
        {
            group.2 += 1;
            return;
        }
        if self.len == self.groups.len() {
            self.flush(metrics);
        }
        self.groups[self.len] = (registry, decision, 1);
        self.len += 1;
    }

    fn flush(&mut self, metrics: &Metrics) {
        for &(registry, decision, n) in &self.groups[..self.len] {
            metrics
                .admission
                .images
                .with_label_values(&[registry, decision])
                .inc_by(n);
        }
        self.len = 0;
    }
}

/// Connection handling options.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for an HTTP/1 request head; also how long a connection (HTTP/1.1 or
    /// HTTP/2) is kept with no request in flight, from the end of its TLS handshake on.
    pub header_read_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed for in-flight requests to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish (up to the drain timeout). With `tls`, connections are TLS with
/// ALPN; without, plain HTTP. Each connection speaks HTTP/1.1 or HTTP/2.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .max_concurrent_streams(256);
    // Every live connection holds a permit: the semaphore bounds them, and getting all the
    // permits back at shutdown means every connection has closed.
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY the first response on a connection waits for a delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let closing = closing_rx.clone();
        let builder = builder.clone();
        let router = router.clone();
        let tls = tls.clone();
        let span = info_span!("conn", %peer);
        tokio::spawn(
            async move {
                let _permit = permit;
                match tls {
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(
                            options.handshake_timeout,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!("TLS handshake timed out");
                                return;
                            }
                        };
                        serve_io(&builder, stream, router, options, closing).await;
                    }
                    None => serve_io(&builder, tcp, router, options, closing).await,
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    closing.send_replace(true);
    debug!(
        ?local,
        connections = options.max_connections - permits.available_permits(),
        "draining connections"
    );
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => debug!(?local, "all connections closed"),
        () = tokio::time::sleep(options.drain_timeout) => {
            warn!(?local, "connections still open after the drain timeout");
        }
    }
}

/// What a connection is doing: requests in flight, and when the last one ended.
struct ConnectionActivity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_ended_ms: AtomicU64,
}

/// One request in flight on a connection; its end is recorded on drop.
struct InFlight(Arc<ConnectionActivity>);

impl ConnectionActivity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection counts as idle for `timeout`: `None` while a request is in flight.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ended_ms.load(Ordering::Acquire));
        Some(self.opened + last + timeout)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.fetch_max(ms, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection until it ends. It is closed gracefully when the server shuts down,
/// and when it has had no request in flight for the header-read timeout: neither hyper's
/// HTTP/2 server nor the protocol detection before the first request has a timeout of its own,
/// so without this a client that connects and sends nothing would hold its connection slot
/// for ever.
async fn serve_io<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    router: Router,
    options: ServeOptions,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = ConnectionActivity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let in_flight = activity.begin();
            let call = router.clone().oneshot(req);
            async move {
                let response = call.await;
                drop(in_flight);
                response
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle_timeout = options.header_read_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closing.wait_for(|c| *c), if !shutting_down => {
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            () = &mut idle, if !shutting_down => {
                match activity.idle_deadline(idle_timeout) {
                    Some(at) if at <= Instant::now() => {
                        debug!("closing a connection idle for {idle_timeout:?}");
                        conn.as_mut().graceful_shutdown();
                        shutting_down = true;
                    }
                    Some(at) => idle.as_mut().reset(at.into()),
                    None => idle.as_mut().reset((Instant::now() + idle_timeout).into()),
                }
            }
        }
    }
}

/// Binds a TCP listener, with a clear error naming the address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// A future that resolves on SIGTERM or Ctrl-C. The handlers are registered when this is
/// called, so a signal that arrives before the future is first polled is not lost.
pub fn termination_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate())
            .map_err(|e| warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server"))
            .ok()
    };
    let interrupt = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = interrupt => info!("interrupt received"),
            }
            return;
        }
        let _ = interrupt.await;
        info!("interrupt received");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_counted_by_registry_and_decision() {
        let config = Config::load(
            "accountId: \"123456789012\"\nregion: eu-west-1\n",
            &crate::config::Overrides::default(),
        )
        .unwrap();
        let sha = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let images = [
            "nginx:1.27",
            "redis:7",
            "quay.io/a/b:1",
            "registry.example/x:1",
            "ghcr.io/o/r:2",
            &format!("nginx@{sha}"),
            "busybox",
            "registry.example/y:1",
        ];
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| serde_json::json!({"name": format!("c{i}"), "image": image}))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE", "object": {"spec": {"containers": containers}}}
        }))
        .unwrap();
        let reviewed = admission::review(&config, &RuleSnapshot::unknown(), &body).unwrap();
        let metrics = Metrics::new().unwrap();
        let activity = Activity::new(SUMMARY_INTERVAL);
        for _ in 0..2 {
            record(&metrics, &activity, Instant::now(), &reviewed);
        }
        let count = |registry, decision| {
            metrics
                .admission
                .images
                .with_label_values(&[registry, decision])
                .get()
        };
        assert_eq!(count("docker.io", "rewritten"), 6);
        assert_eq!(count("quay.io", "rewritten"), 2);
        assert_eq!(count("ghcr.io", "rewritten"), 2);
        assert_eq!(count("other", "not_mapped"), 4);
        assert_eq!(count("docker.io", "digest_unknown"), 2);
        let rendered = metrics.render();
        assert_eq!(
            rendered.matches("pullthrough_images_total{").count(),
            5,
            "{rendered}"
        );
    }

    #[test]
    fn activity_is_summarised_once_per_interval_and_starts_again() {
        let activity = Activity::new(Duration::from_mins(1));
        let t0 = activity.since;
        assert_eq!(activity.count(t0, true, 4), None);
        assert_eq!(activity.count(t0 + Duration::from_secs(30), false, 0), None);
        let summary = activity
            .count(t0 + Duration::from_secs(61), true, 1)
            .unwrap();
        assert_eq!(
            summary,
            Summary {
                elapsed: Duration::from_secs(61),
                requests: 3,
                patched: 2,
                rewritten: 5,
            }
        );
        assert_eq!(activity.count(t0 + Duration::from_secs(62), true, 2), None);
        let next = activity
            .count(t0 + Duration::from_secs(122), false, 0)
            .unwrap();
        assert_eq!((next.requests, next.patched, next.rewritten), (2, 1, 2));
        assert_eq!(next.elapsed, Duration::from_secs(61));
    }
}
