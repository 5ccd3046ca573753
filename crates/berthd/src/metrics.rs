//! berthd's Prometheus metrics, served as text on `GET /v1/metrics` (containerd's path) at the
//! config's `[metrics] address`; off when that is unset or empty.
//!
//! What is measured:
//! - **gRPC** (a tower layer on the router, named as go-grpc-prometheus names them, which
//!   containerd uses): `grpc_server_started_total` and `grpc_server_handled_total` (with
//!   `grpc_code`) and the `grpc_server_handling_seconds` histogram, per `grpc_service` and
//!   `grpc_method`. A call is recorded when its response body ends, with the status of its
//!   trailers (or of its headers, for a trailers-only error): a streaming call is timed to its
//!   last message, and one the client abandons counts as `Canceled`.
//! - **Tasks, containers and shims**, read at each scrape: `berth_tasks` and `berth_containers`
//!   per `namespace`, `berth_shims` (running shim processes).
//! - **Events**: `berth_event_subscribers` and `berth_event_buffered_bytes` (the exchange's
//!   queues, bounded in bytes).
//! - **Garbage collection**, from berth-metadata's `GcStats` (the metadata crate knows nothing of
//!   Prometheus): `berth_gc_runs_total`, `berth_gc_bytes_freed_total`,
//!   `berth_gc_blobs_removed_total`, `berth_gc_content_removed_total`,
//!   `berth_gc_snapshots_removed_total`, `berth_gc_leases_expired_total`.
//!
//! - **Per container** (from its shim's cgroup metrics, as `berth stats` reads them, each shim
//!   asked at each scrape with a 2 s limit), labelled `namespace` and `container_id`:
//!   `container_cpu_usage_nanoseconds`, `container_memory_usage_bytes` (without inactive file
//!   cache), `container_memory_limit_bytes`, `container_pids_current`, `container_pids_limit`,
//!   `container_memory_oom_kills`. Fewer series than containerd's cgroups plugin exports.
//!
//! The listener is plain HTTP with no authentication: the default is off and a loopback address
//! (`127.0.0.1:PORT`) is what the documentation and tests use; any other address is allowed, as
//! in containerd, with a warning in the log.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_core::containers::ContainerStore;
use berth_core::namespaces::NamespaceStore;
use berth_metadata::Metadata;
use berth_runtime::TaskManager;
use berth_services::Exchange;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The path metrics are served on (containerd's).
pub const PATH: &str = "/v1/metrics";
/// Distinct gRPC methods tracked; calls to further (unknown) paths count under `unknown`, so a
/// client cannot grow the label set without bound.
const MAX_METHODS: usize = 256;
/// Largest HTTP request head read from a scraper.
const MAX_REQUEST: usize = 8 << 10;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    container_id: String,
}

/// How long a scrape waits for one shim's cgroup metrics.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// A task's cgroup usage, one gauge family per figure.
const CONTAINER_GAUGES: [(&str, &str); 6] = [
    ("cpu_usage_nanoseconds", "CPU time used by the container"),
    (
        "memory_usage_bytes",
        "Memory used by the container, without inactive file cache",
    ),
    ("memory_limit_bytes", "The container's memory limit"),
    ("pids_current", "Processes in the container"),
    ("pids_limit", "The container's process limit"),
    (
        "memory_oom_kills",
        "Processes of the container killed by the OOM killer",
    ),
];

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The gRPC counters the router's layer updates.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    methods: Arc<Mutex<HashSet<String>>>,
}

impl GrpcMetrics {
    fn new(registry: &mut Registry) -> Self {
        let m = GrpcMetrics {
            started: Family::default(),
            handled: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            methods: Arc::default(),
        };
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            m.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs answered by the server, by status code",
            m.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a request to its response headers",
            m.seconds.clone(),
        );
        m
    }

    /// The labels of a request path `/package.Service/Method`.
    fn labels(&self, path: &str) -> MethodLabels {
        let unknown = || MethodLabels {
            grpc_service: "unknown".into(),
            grpc_method: "unknown".into(),
        };
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return unknown();
        };
        let mut known = self.methods.lock().expect("metrics methods poisoned");
        if !known.contains(path) {
            if known.len() >= MAX_METHODS {
                return unknown();
            }
            known.insert(path.to_string());
        }
        MethodLabels {
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
        }
    }
}

/// Everything measured, and what gauges are read from at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    grpc: GrpcMetrics,
    sources: Sources,
    tasks: Family<NamespaceLabels, Gauge>,
    containers: Family<NamespaceLabels, Gauge>,
    shims: Gauge,
    subscribers: Gauge,
    buffered: Gauge,
    gc: BTreeMap<&'static str, Counter>,
    per_container: BTreeMap<&'static str, Family<ContainerLabels, Gauge>>,
    /// One scrape at a time: the GC counters move by the difference since the last one.
    scrape: tokio::sync::Mutex<()>,
}

/// The daemon's parts the scrape-time gauges read.
#[derive(Debug, Clone)]
pub struct Sources {
    pub meta: Metadata,
    pub exchange: Exchange,
    pub runtime: TaskManager,
}

const GC_COUNTERS: [(&str, &str); 6] = [
    ("runs", "Garbage collections run"),
    (
        "bytes_freed",
        "Bytes of blobs removed by garbage collection",
    ),
    ("blobs_removed", "Blob files removed by garbage collection"),
    (
        "content_removed",
        "Content records removed by garbage collection",
    ),
    (
        "snapshots_removed",
        "Snapshot records removed by garbage collection",
    ),
    (
        "leases_expired",
        "Expired leases removed by garbage collection",
    ),
];

impl Metrics {
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::new(&mut registry);
        let berth = registry.sub_registry_with_prefix("berth");
        let (tasks, containers) = (Family::default(), Family::default());
        berth.register("tasks", "Tasks by namespace", Family::clone(&tasks));
        berth.register(
            "containers",
            "Containers by namespace",
            Family::clone(&containers),
        );
        let (shims, subscribers, buffered) = (Gauge::default(), Gauge::default(), Gauge::default());
        berth.register("shims", "Running shim processes", shims.clone());
        berth.register(
            "event_subscribers",
            "Live event subscribers",
            subscribers.clone(),
        );
        berth.register(
            "event_buffered_bytes",
            "Bytes of events queued for subscribers",
            buffered.clone(),
        );
        let mut gc = BTreeMap::new();
        for (name, help) in GC_COUNTERS {
            let c = Counter::default();
            berth.register(format!("gc_{name}"), help, c.clone());
            gc.insert(name, c);
        }
        let mut per_container = BTreeMap::new();
        let container = registry.sub_registry_with_prefix("container");
        for (name, help) in CONTAINER_GAUGES {
            let f = Family::<ContainerLabels, Gauge>::default();
            container.register(name, help, f.clone());
            per_container.insert(name, f);
        }
        Metrics {
            per_container,
            registry,
            grpc,
            sources,
            tasks,
            containers,
            shims,
            subscribers,
            buffered,
            gc,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// The tower layer counting the router's calls.
    pub fn grpc_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: Some(self.grpc.clone()),
        }
    }

    /// Read the gauges' sources and encode everything in the text exposition format.
    pub async fn render(&self) -> anyhow::Result<String> {
        let _one = self.scrape.lock().await;
        let s = &self.sources;
        self.tasks.clear();
        self.containers.clear();
        for f in self.per_container.values() {
            f.clear();
        }
        let mut shims = BTreeSet::new();
        for (ns, _) in NamespaceStore::list(&s.meta).context("list namespaces")? {
            let tasks = s.runtime.list(&ns);
            shims.extend(tasks.iter().map(|t| t.shim_pid()));
            for t in &tasks {
                self.container_usage(&ns, t).await;
            }
            let containers = ContainerStore::list(&s.meta, &ns, &[])
                .await
                .with_context(|| format!("list containers of namespace {ns}"))?;
            let labels = NamespaceLabels { namespace: ns };
            self.tasks.get_or_create(&labels).set(gauge(tasks.len()));
            self.containers
                .get_or_create(&labels)
                .set(gauge(containers.len()));
        }
        self.shims.set(gauge(shims.len()));
        self.subscribers.set(gauge(s.exchange.subscribers()));
        self.buffered.set(gauge(s.exchange.buffered_bytes()));
        let st = s.meta.gc_stats();
        for (name, total) in [
            ("runs", st.runs),
            ("bytes_freed", st.total_bytes_freed),
            ("blobs_removed", st.total_blobs_removed),
            ("content_removed", st.total_content_removed),
            ("snapshots_removed", st.total_snapshots_removed),
            ("leases_expired", st.total_leases_expired),
        ] {
            if let Some(c) = self.gc.get(name) {
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .context("encode metrics")?;
        Ok(out)
    }
}

/// A status code as go-grpc-prometheus names it (`OK`, `NotFound`, ...).
fn code_name(code: i32) -> String {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK".into(),
        c => format!("{c:?}"),
    }
}

impl Metrics {
    /// Set the per-container gauges of task `t` from its shim's cgroup metrics; a shim that
    /// does not answer (or a runtime without metrics) leaves the container out of this scrape.
    async fn container_usage(&self, ns: &str, t: &berth_runtime::ShimTask) {
        let any = match t.stats(Some(STATS_TIMEOUT)).await {
            Ok(Some(any)) => any,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(container = t.id(), error = %e, "metrics: task stats");
                return;
            }
        };
        let u = match berth_ops::stats::decode(t.id(), &any) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(container = t.id(), error = %e, "metrics: decode task stats");
                return;
            }
        };
        let labels = ContainerLabels {
            namespace: ns.to_string(),
            container_id: t.id().to_string(),
        };
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (name, value) in [
            ("cpu_usage_nanoseconds", Some(u.cpu_ns)),
            ("memory_usage_bytes", Some(u.memory)),
            ("memory_limit_bytes", u.memory_limit),
            ("pids_current", Some(u.pids)),
            ("pids_limit", u.pids_limit),
            ("memory_oom_kills", Some(u.oom_kills)),
        ] {
            if let (Some(f), Some(v)) = (self.per_container.get(name), value) {
                f.get_or_create(&labels).set(as_i64(v));
            }
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Bind `address` (`host:port`) and serve `metrics` there until the task is dropped.
pub async fn serve(address: &str, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = address
        .parse()
        .with_context(|| format!("config metrics.address {address:?}: want host:port"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(address = %addr, "metrics served beyond loopback, without authentication");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for metrics on {addr}"))?;
    let bound = listener.local_addr().context("metrics listener address")?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    let m = metrics.clone();
                    tokio::spawn(async move {
                        if let Err(e) = respond(conn, &m).await {
                            tracing::debug!(error = %e, "metrics request");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// Answer one HTTP/1.x request, then close the connection.
async fn respond(mut conn: TcpStream, metrics: &Metrics) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            anyhow::ensure!(head.len() < MAX_REQUEST, "request head too large");
            let n = conn.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "connection closed before the request ended");
            head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .context("request timed out")??;
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", PATH) => match metrics.render().await {
            Ok(text) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain",
                format!("{e:#}\n"),
            ),
        },
        (_, PATH) => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        _ => (
            "404 Not Found",
            "text/plain",
            format!("metrics are at {PATH}\n"),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await?;
    Ok(())
}

/// Counts and times the calls through the gRPC router; does nothing when metrics are off.
#[derive(Debug, Clone, Default)]
pub struct GrpcMetricsLayer {
    metrics: Option<GrpcMetrics>,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Option<GrpcMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: http_body::Body + Send + 'static,
{
    type Response = http::Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let record = self.metrics.clone().map(|m| {
            let labels = m.labels(req.uri().path());
            m.started.get_or_create(&labels).inc();
            Record {
                m,
                labels,
                start: Instant::now(),
                code: None,
            }
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let mut record = record;
            match res {
                Ok(r) => {
                    // A trailers-only response (most errors) has its status in the headers.
                    if let Some(rec) = record.as_mut() {
                        rec.code = grpc_status(r.headers());
                    }
                    Ok(r.map(|body| MeteredBody {
                        inner: Box::pin(body),
                        record,
                    }))
                }
                Err(e) => {
                    if let Some(rec) = record.as_mut() {
                        rec.code = Some("Unavailable".into());
                    }
                    Err(e)
                }
            }
        })
    }
}

/// The `grpc-status` of a header or trailer map, named.
fn grpc_status(h: &http::HeaderMap) -> Option<String> {
    h.get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(code_name)
}

/// One call being measured: recorded (handled, with its code, and timed) when dropped, that is
/// when its response body has ended or the call was abandoned.
#[derive(Debug)]
struct Record {
    m: GrpcMetrics,
    labels: MethodLabels,
    start: Instant,
    /// The status, once seen in the headers or trailers.
    code: Option<String>,
}

impl Drop for Record {
    fn drop(&mut self) {
        let MethodLabels {
            grpc_service,
            grpc_method,
        } = self.labels.clone();
        self.m
            .seconds
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
        // No status at all: the client went away before the call ended.
        let grpc_code = self.code.take().unwrap_or_else(|| "Canceled".into());
        self.m
            .handled
            .get_or_create(&HandledLabels {
                grpc_service,
                grpc_method,
                grpc_code,
            })
            .inc();
    }
}

/// A response body that reports its call's status (from the trailers) and duration when it
/// ends: a streaming call is timed to its last message.
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: Pin<Box<B>>,
    record: Option<Record>,
}

impl<B: http_body::Body> http_body::Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(t), Some(rec)) = (frame.trailers_ref(), this.record.as_mut()) {
                    rec.code = grpc_status(t).or(rec.code.take());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(rec) = this.record.as_mut() {
                    rec.code = Some("Internal".into());
                }
            }
            Poll::Ready(None) => {
                if let Some(rec) = this.record.as_mut() {
                    rec.code.get_or_insert_with(|| "OK".into());
                }
                this.record = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_become_bounded_labels() {
        let mut r = Registry::default();
        let g = GrpcMetrics::new(&mut r);
        let l = g.labels("/containerd.services.version.v1.Version/Version");
        assert_eq!(l.grpc_service, "containerd.services.version.v1.Version");
        assert_eq!(l.grpc_method, "Version");
        assert_eq!(g.labels("nonsense").grpc_method, "unknown");
        for i in 0..MAX_METHODS {
            g.labels(&format!("/s/m{i}"));
        }
        assert_eq!(g.labels("/s/one-too-many").grpc_method, "unknown");
        assert_eq!(
            g.labels("/containerd.services.version.v1.Version/Version")
                .grpc_method,
            "Version"
        );
    }
}
