//! Start-up, serving and shutdown of berthd.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use berth_api::containers::containers_server::ContainersServer;
use berth_api::content::content_server::ContentServer;
use berth_api::diff::diff_server::DiffServer;
use berth_api::events_service::events_server::EventsServer;
use berth_api::images::images_server::ImagesServer;
use berth_api::introspection::introspection_server::IntrospectionServer;
use berth_api::leases::leases_server::LeasesServer;
use berth_api::namespaces::namespaces_server::NamespacesServer;
use berth_api::snapshots::snapshots_server::SnapshotsServer;
use berth_api::tasks::tasks_server::TasksServer;
use berth_api::version::version_server::VersionServer;
use berth_content::LocalStore;
use berth_core::snapshots::Snapshotter;
use berth_metadata::Metadata;
use berth_runtime::{RuntimeConfig, ShimEventsServer, TaskManager};
use berth_services::containers::ContainersService;
use berth_services::content::ContentService;
use berth_services::diff::DiffService;
use berth_services::events::EventsService;
use berth_services::images::ImagesService;
use berth_services::introspection::IntrospectionService;
use berth_services::leases::LeasesService;
use berth_services::namespaces::NamespacesService;
use berth_services::snapshots::SnapshotsService;
use berth_services::tasks::{LocalTasks, TasksService};
use berth_services::version::VersionService;
use berth_services::{Exchange, LocalStores, Plugin, PluginRegistry};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::{self, Config};
use crate::Args;

/// Largest gRPC message accepted or sent (containerd's default is 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;
/// How long calls in flight may run on after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn init_logging(args: &Args, cfg: &Config) -> anyhow::Result<()> {
    let level = args
        .log_level
        .clone()
        .or_else(|| cfg.debug.level.clone())
        .or_else(|| std::env::var("BERTH_LOG").ok())
        .unwrap_or_else(|| "info".into());
    // The ttrpc client logs "The request has returned" at error level whenever a caller
    // stops waiting for a reply (a `ctr task wait` interrupted, a CRI call cancelled): a
    // normal event here, not an error. Silence that one module unless asked for by name.
    let level = if level.contains("ttrpc") {
        level
    } else {
        format!("{level},ttrpc::asynchronous::client=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .with_context(|| format!("log level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.debug.format.as_deref() {
        Some("json") => builder.json().init(),
        Some("text") | None => builder.init(),
        Some(other) => anyhow::bail!("config debug.format {other:?}: want \"text\" or \"json\""),
    }
    Ok(())
}

fn mkdir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Bind the socket: refuse if a live berthd answers on it, remove it if it is stale.
fn bind(address: &Path, gid: Option<u32>) -> anyhow::Result<UnixListener> {
    if let Some(parent) = address.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    if address.exists() {
        match std::os::unix::net::UnixStream::connect(address) {
            Ok(_) => anyhow::bail!(
                "another daemon is serving {}: refusing to start",
                address.display()
            ),
            Err(_) => {
                tracing::warn!(address = %address.display(), "removing stale socket");
                std::fs::remove_file(address)
                    .with_context(|| format!("remove stale socket {}", address.display()))?;
            }
        }
    }
    let listener =
        UnixListener::bind(address).with_context(|| format!("listen on {}", address.display()))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", address.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(address, None, Some(gid))
            .with_context(|| format!("chown {} to gid {gid}", address.display()))?;
    }
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "shutting down");
}

fn gc_exports(meta: &Metadata) -> std::collections::HashMap<String, String> {
    let s = meta.gc_stats();
    let mut m = std::collections::HashMap::new();
    m.insert("runs".into(), s.runs.to_string());
    m.insert(
        "last_run".into(),
        s.last_run
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default(),
    );
    m.insert(
        "last_pause_us".into(),
        s.last.duration.as_micros().to_string(),
    );
    m.insert(
        "content_removed_total".into(),
        s.total_content_removed.to_string(),
    );
    m.insert(
        "blobs_removed_total".into(),
        s.total_blobs_removed.to_string(),
    );
    m.insert(
        "leases_expired_total".into(),
        s.total_leases_expired.to_string(),
    );
    m
}

pub async fn run(args: Args, cfg: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = args
        .root
        .clone()
        .or(cfg.root.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_ROOT));
    let state = args
        .state
        .clone()
        .or(cfg.state.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE));
    let address = args
        .address
        .clone()
        .or(cfg.grpc.address.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_ADDRESS));
    let gc_config = cfg.gc_config()?;
    // Mirrors for berthd's own pulls (CRI, Transfer): handed to berth-ops' PullOptions.
    let hosts_dir = cfg.registry.hosts_dir();
    tracing::debug!(hosts_dir = %hosts_dir.display(), "registry hosts directory");
    let cri = cfg.cri.enabled().then(|| berth_cri::CriConfig {
        snapshotter: "overlayfs".to_string(),
        snapshotter_root: root.join("io.containerd.snapshotter.v1.overlayfs"),
        hosts_dir: hosts_dir.clone(),
        sandbox_image: cfg.cri.sandbox_image(),
        runtime_version: format!("v{}", env!("CARGO_PKG_VERSION")),
    });
    // Modes (ARCHITECTURE.md, "File modes"): the root is private; the state dir is traversable
    // so that a container's root in a user namespace reaches its bundle; FIFOs are private.
    mkdir(&root, 0o700)?;
    mkdir(&state, 0o711)?;
    mkdir(&state.join("fifo"), 0o700)?;

    let content_root = root.join("io.containerd.content.v1.content");
    let db_path = root
        .join("io.containerd.metadata.v1.redb")
        .join("meta.redb");
    let listener = bind(&address, cfg.grpc.gid)?;
    let blobs = LocalStore::open(&content_root).context("open content store")?;
    let meta = Metadata::open(&db_path, blobs).map_err(|e| {
        let _ = std::fs::remove_file(&address);
        anyhow::anyhow!(
            "open metadata {}: {e} (is another berthd using this root?)",
            db_path.display()
        )
    })?;

    let exchange = Exchange::new();
    let mut registry = PluginRegistry::default();
    registry.register(Plugin::new("io.containerd.event.v1", "exchange", &[]));
    registry.register(
        Plugin::new("io.containerd.content.v1", "content", &[])
            .export("root", content_root.display().to_string()),
    );
    registry.register(
        Plugin::new(
            "io.containerd.metadata.v1",
            "redb",
            &["io.containerd.content.v1"],
        )
        .export("path", db_path.display().to_string())
        .export("schema", berth_metadata::SCHEMA_VERSION.to_string()),
    );
    register_snapshotters(&meta, &root, &mut registry);
    registry.register(
        Plugin::new(
            "io.containerd.differ.v1",
            "walking",
            &["io.containerd.metadata.v1"],
        )
        .export("root", root.display().to_string()),
    );
    let m2 = meta.clone();
    registry.register(
        Plugin::new(
            "io.containerd.gc.v1",
            "scheduler",
            &["io.containerd.metadata.v1"],
        )
        .exports_with(Arc::new(move || gc_exports(&m2))),
    );
    registry.register(Plugin::new(
        "io.containerd.lease.v1",
        "manager",
        &["io.containerd.metadata.v1"],
    ));

    // Tasks: shims forward their events to the ttrpc API socket, `<address>.ttrpc` as in
    // containerd; tasks left running by a previous berthd are found again before any client
    // can ask for them.
    let ttrpc_address = PathBuf::from(format!("{}.ttrpc", address.display()));
    let runtime = TaskManager::new(
        runtime_config(&root, &state, &address, &ttrpc_address)?,
        Arc::new(exchange.clone()),
    );
    registry.register(
        Plugin::new(
            "io.containerd.runtime.v2",
            "task",
            &["io.containerd.event.v1", "io.containerd.metadata.v1"],
        )
        .export(
            "state",
            state
                .join(berth_runtime::bundle::TASK_DIR)
                .display()
                .to_string(),
        )
        .export("ttrpc_address", ttrpc_address.display().to_string()),
    );
    register_services(
        &mut registry,
        &Handles {
            meta: meta.clone(),
            exchange: exchange.clone(),
            runtime: runtime.clone(),
            cri,
        },
    );

    let events_server = ShimEventsServer::serve_services(&ttrpc_address, registry.ttrpc_services())
        .await
        .context("serve the ttrpc API socket")?;
    if let Some(gid) = cfg.grpc.gid {
        std::os::unix::fs::chown(&ttrpc_address, None, Some(gid))
            .with_context(|| format!("chown {} to gid {gid}", ttrpc_address.display()))?;
    }
    let loaded = runtime.load_existing().await;
    let gc_task = tokio::spawn(meta.clone().run_gc_scheduler(gc_config));
    let grpc_metrics = start_metrics(
        &cfg,
        crate::metrics::Sources {
            meta: meta.clone(),
            exchange: exchange.clone(),
            runtime: runtime.clone(),
        },
    )
    .await?;
    let router = tonic::transport::Server::builder()
        .layer(grpc_metrics)
        .add_routes(registry.grpc_routes());

    tracing::info!(
        address = %address.display(),
        root = %root.display(),
        state = %state.display(),
        tasks_reconnected = loaded.reconnected.len(),
        tasks_cleaned_up = loaded.cleaned_up.len(),
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "berthd ready, serving"
    );
    // On a signal, stop accepting and let calls in flight finish, but do not wait on streams
    // that never end (event subscriptions): after the grace period berthd exits regardless.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Each connection's `:authority` made acceptable to h2 (crictl/critest 1.26 send the path).
    let incoming = tokio_stream::StreamExt::map(UnixListenerStream::new(listener), |conn| {
        conn.map(crate::authority::AuthorityFix::new)
    });
    let serve = router.serve_with_incoming_shutdown(incoming, async {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    let grace = async {
        if stop_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let served = tokio::select! {
        r = serve => r,
        _ = grace => {
            tracing::info!("grace period over, closing remaining streams");
            Ok(())
        }
    };
    gc_task.abort();
    // Shims keep running; a later berthd reconnects to them.
    events_server.shutdown().await;
    let _ = std::fs::remove_file(&address);
    served.context("serve gRPC")?;
    tracing::info!("stopped");
    Ok(())
}

/// Serve Prometheus metrics if the config names an address; the layer counting gRPC calls (a
/// no-op when metrics are off).
async fn start_metrics(
    cfg: &Config,
    sources: crate::metrics::Sources,
) -> anyhow::Result<crate::metrics::GrpcMetricsLayer> {
    let Some(address) = cfg.metrics.address() else {
        return Ok(crate::metrics::GrpcMetricsLayer::default());
    };
    let metrics = Arc::new(crate::metrics::Metrics::new(sources));
    let bound = crate::metrics::serve(address, metrics.clone()).await?;
    tracing::info!(address = %bound, path = crate::metrics::PATH, "serving metrics");
    Ok(metrics.grpc_layer())
}

/// The handles the API services are made over.
struct Handles {
    meta: Metadata,
    exchange: Exchange,
    runtime: TaskManager,
    /// The CRI's configuration; None when `[cri] enabled = false`.
    cri: Option<berth_cri::CriConfig>,
}

/// Caps a generated gRPC server's message sizes at [`MAX_MESSAGE`].
macro_rules! limits {
    ($svc:expr) => {
        $svc.max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    };
}

/// containerd's `io.containerd.grpc.v1` plugins: one entry per service, naming what it requires
/// and adding its server to the gRPC router (and, for events, to the ttrpc API socket).
fn register_services(registry: &mut PluginRegistry, h: &Handles) {
    const GRPC: &str = "io.containerd.grpc.v1";
    let store = Arc::new(h.meta.clone());
    let (meta, exchange, runtime) = (h.meta.clone(), h.exchange.clone(), h.runtime.clone());
    let uuid = h.meta.uuid().to_string();
    let (s, x) = (store.clone(), exchange.clone());
    registry.register(
        Plugin::new(
            GRPC,
            "content",
            &["io.containerd.content.v1", "io.containerd.metadata.v1"],
        )
        .serves(move |_, r| {
            r.add_service(limits!(ContentServer::new(ContentService {
                store: s.clone(),
                exchange: x.clone(),
            })));
        }),
    );
    let m = meta.clone();
    registry.register(
        Plugin::new(GRPC, "diff", &["io.containerd.differ.v1"]).serves(move |_, r| {
            r.add_service(limits!(DiffServer::new(DiffService { meta: m.clone() })));
        }),
    );
    let (x, publisher) = (exchange.clone(), Arc::new(exchange.clone()));
    registry.register(
        Plugin::new(GRPC, "events", &["io.containerd.event.v1"])
            .serves(move |_, r| {
                r.add_service(limits!(EventsServer::new(EventsService {
                    exchange: x.clone(),
                })));
            })
            .serves_ttrpc(move || berth_runtime::events_service(publisher.clone())),
    );
    registry.register(Plugin::new(GRPC, "healthcheck", &[]).serves(|_, r| {
        // containerd's client `IsServing` asks for the server as a whole (service "").
        let (_reporter, health) = tonic_health::server::health_reporter();
        r.add_service(limits!(health));
    }));
    let (s, x) = (store.clone(), exchange.clone());
    registry.register(
        Plugin::new(
            GRPC,
            "images",
            &["io.containerd.metadata.v1", "io.containerd.gc.v1"],
        )
        .serves(move |_, r| {
            r.add_service(limits!(ImagesServer::new(ImagesService {
                store: s.clone(),
                exchange: x.clone(),
            })));
        }),
    );
    registry.register(
        Plugin::new(GRPC, "introspection", &[]).serves(move |registry, r| {
            r.add_service(limits!(IntrospectionServer::new(IntrospectionService {
                registry: registry.clone(),
                uuid: uuid.clone(),
            })));
        }),
    );
    let s = store.clone();
    registry.register(
        Plugin::new(GRPC, "leases", &["io.containerd.lease.v1"]).serves(move |_, r| {
            r.add_service(limits!(LeasesServer::new(LeasesService {
                leases: s.clone()
            })));
        }),
    );
    let (s, x) = (store.clone(), exchange.clone());
    registry.register(
        Plugin::new(GRPC, "namespaces", &["io.containerd.metadata.v1"]).serves(move |_, r| {
            r.add_service(limits!(NamespacesServer::new(NamespacesService {
                store: s.clone(),
                exchange: x.clone(),
            })));
        }),
    );
    let (m, x) = (meta.clone(), exchange.clone());
    registry.register(
        Plugin::new(GRPC, "snapshots", &["io.containerd.snapshotter.v1"]).serves(move |_, r| {
            r.add_service(limits!(SnapshotsServer::new(SnapshotsService {
                meta: m.clone(),
                exchange: x.clone(),
            })));
        }),
    );
    let (s, x) = (store.clone(), exchange.clone());
    registry.register(
        Plugin::new(
            GRPC,
            "containers",
            &["io.containerd.metadata.v1", "io.containerd.gc.v1"],
        )
        .serves(move |_, r| {
            r.add_service(limits!(ContainersServer::new(ContainersService {
                store: s.clone(),
                exchange: x.clone(),
            })));
        }),
    );
    let (m, runtime2) = (meta.clone(), runtime.clone());
    registry.register(
        Plugin::new(
            GRPC,
            "tasks",
            &["io.containerd.runtime.v2", "io.containerd.metadata.v1"],
        )
        .serves(move |_, r| {
            r.add_service(limits!(TasksServer::new(TasksService {
                tasks: LocalTasks::new(m.clone(), runtime2.clone()),
            })));
        }),
    );
    if let Some(config) = h.cri.clone() {
        // containerd's `cri` plugin: the CRI on berthd's own socket, over the stores in-process.
        let stores = LocalStores::new(meta.clone(), LocalTasks::new(meta.clone(), runtime.clone()));
        let cri = berth_cri::Cri::new(stores, meta.clone(), config);
        registry.register(
            Plugin::new(
                GRPC,
                "cri",
                &[
                    "io.containerd.runtime.v2",
                    "io.containerd.metadata.v1",
                    "io.containerd.snapshotter.v1",
                    "io.containerd.differ.v1",
                ],
            )
            .export("namespace", berth_cri::NAMESPACE)
            .export("api_version", berth_cri::API_VERSION)
            .serves(move |_, r| {
                r.add_service(limits!(cri.runtime_server()));
                r.add_service(limits!(cri.image_server()));
            }),
        );
    }
    registry.register(Plugin::new(GRPC, "version", &[]).serves(|_, r| {
        r.add_service(limits!(VersionServer::new(VersionService {
            version: format!("v{}", env!("CARGO_PKG_VERSION")),
            revision: env!("BERTH_REVISION").to_string(),
        })));
    }));
}

/// Where the runtime keeps bundles and finds shims: berthd's own directory is searched after
/// `PATH`, so `containerd-shim-berth-v2` installed beside berthd is found.
fn runtime_config(
    root: &Path,
    state: &Path,
    address: &Path,
    ttrpc_address: &Path,
) -> anyhow::Result<RuntimeConfig> {
    let exe = std::env::current_exe().context("locate the berthd executable")?;
    Ok(RuntimeConfig {
        state: state.to_path_buf(),
        root: root.to_path_buf(),
        grpc_address: address.to_path_buf(),
        ttrpc_address: ttrpc_address.to_path_buf(),
        shim_dirs: exe.parent().map(Path::to_path_buf).into_iter().collect(),
        publish_binary: exe,
    })
}

/// Open the snapshotter backends under `root` and hand them to the metadata layer; one that
/// cannot start (e.g. overlayfs on a filesystem without overlay support) is listed by
/// introspection with its error, as containerd does, and berthd goes on without it.
fn register_snapshotters(meta: &Metadata, root: &Path, registry: &mut PluginRegistry) {
    use berth_snapshots::{NativeSnapshotter, OverlaySnapshotter};
    let overlay_root = root.join("io.containerd.snapshotter.v1.overlayfs");
    let native_root = root.join("io.containerd.snapshotter.v1.native");
    type Opened = Result<Arc<dyn Snapshotter>, String>;
    let opened: [(&str, &Path, Opened); 2] = [
        (
            "overlayfs",
            &overlay_root,
            berth_snapshots::overlay_supported(&overlay_root)
                .and_then(|()| OverlaySnapshotter::open(&overlay_root))
                .map(|s| Arc::new(s) as Arc<dyn Snapshotter>)
                .map_err(|e| e.to_string()),
        ),
        (
            "native",
            &native_root,
            NativeSnapshotter::open(&native_root)
                .map(|s| Arc::new(s) as Arc<dyn Snapshotter>)
                .map_err(|e| e.to_string()),
        ),
    ];
    for (name, dir, backend) in opened {
        let mut plugin = Plugin::new("io.containerd.snapshotter.v1", name, &[])
            .export("root", dir.display().to_string());
        match backend {
            Ok(b) => meta.register_snapshotter(name, b),
            Err(e) => {
                tracing::warn!(snapshotter = name, error = %e, "snapshotter not loaded");
                plugin.init_error = Some(e);
            }
        }
        registry.register(plugin);
    }
}
