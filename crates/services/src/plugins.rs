//! Plugins as data: what berthd is made of, listed by the Introspection service as containerd
//! lists its plugins (`ctr plugins ls`), and, for the plugins that serve an API, what puts that
//! API on berthd's sockets: the gRPC router is built from this table ([`PluginRegistry::grpc_routes`])
//! and so are the services of the ttrpc API socket ([`PluginRegistry::ttrpc_services`]), so adding a
//! service is one entry.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use berth_core::filters::Adaptor;
use tonic::service::{Routes, RoutesBuilder};

/// A function giving a plugin's current exports (e.g. the collector's figures).
pub type ExportsFn = Arc<dyn Fn() -> HashMap<String, String> + Send + Sync>;

/// What puts a plugin's gRPC service on berthd's router. It is given the whole table (the
/// introspection service serves the table itself).
pub type AddGrpc = Arc<dyn Fn(&PluginRegistry, &mut RoutesBuilder) + Send + Sync>;

/// What a plugin serves on the ttrpc API socket (`<address>.ttrpc`): ttrpc services by name.
pub type TtrpcServices =
    Arc<dyn Fn() -> HashMap<String, ttrpc::asynchronous::Service> + Send + Sync>;

/// One registered plugin: its type (`io.containerd.grpc.v1`), id (`content`), what it requires,
/// and the values it exports.
#[derive(Clone)]
pub struct Plugin {
    pub kind: String,
    pub id: String,
    pub requires: Vec<String>,
    pub capabilities: Vec<String>,
    pub exports: HashMap<String, String>,
    pub dynamic_exports: Option<ExportsFn>,
    /// Set when the plugin failed to start; `ctr plugins ls` shows it as `error`.
    pub init_error: Option<String>,
    /// The gRPC service this plugin serves, if any.
    pub grpc: Option<AddGrpc>,
    /// The ttrpc services this plugin serves, if any.
    pub ttrpc: Option<TtrpcServices>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// A plugin of `kind` and `id` requiring the plugin types `requires`.
    pub fn new(kind: &str, id: &str, requires: &[&str]) -> Plugin {
        Plugin {
            kind: kind.to_string(),
            id: id.to_string(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
            capabilities: Vec::new(),
            exports: HashMap::new(),
            dynamic_exports: None,
            init_error: None,
            grpc: None,
            ttrpc: None,
        }
    }

    /// Serve a gRPC service: `add` puts it on the router (`routes.add_service(...)`).
    pub fn serves(
        mut self,
        add: impl Fn(&PluginRegistry, &mut RoutesBuilder) + Send + Sync + 'static,
    ) -> Plugin {
        self.grpc = Some(Arc::new(add));
        self
    }

    /// Serve ttrpc services on the ttrpc API socket.
    pub fn serves_ttrpc(
        mut self,
        services: impl Fn() -> HashMap<String, ttrpc::asynchronous::Service> + Send + Sync + 'static,
    ) -> Plugin {
        self.ttrpc = Some(Arc::new(services));
        self
    }

    /// Add a static export.
    pub fn export(mut self, key: &str, value: impl Into<String>) -> Plugin {
        self.exports.insert(key.to_string(), value.into());
        self
    }

    /// Add exports computed when the plugin is listed.
    pub fn exports_with(mut self, f: ExportsFn) -> Plugin {
        self.dynamic_exports = Some(f);
        self
    }

    /// Every export, static and dynamic.
    pub fn all_exports(&self) -> HashMap<String, String> {
        let mut e = self.exports.clone();
        if let Some(f) = &self.dynamic_exports {
            e.extend(f());
        }
        e
    }
}

impl Adaptor for Plugin {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        let v = match fieldpath.first().map(String::as_str)? {
            "type" => self.kind.clone(),
            "id" => self.id.clone(),
            "capabilities" => self.capabilities.join(","),
            _ => return None,
        };
        (!v.is_empty()).then_some(v)
    }
}

/// The registry berthd fills at start-up, in initialisation order.
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    plugins: Vec<Plugin>,
}

impl PluginRegistry {
    /// Add a plugin.
    pub fn register(&mut self, p: Plugin) {
        self.plugins.push(p);
    }

    /// Every plugin, in registration order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The gRPC router's routes: every started plugin's gRPC service.
    pub fn grpc_routes(&self) -> Routes {
        let mut routes = RoutesBuilder::default();
        for p in self.plugins.iter().filter(|p| p.init_error.is_none()) {
            if let Some(add) = &p.grpc {
                add(self, &mut routes);
            }
        }
        routes.routes()
    }

    /// The services of the ttrpc API socket: every started plugin's ttrpc services.
    pub fn ttrpc_services(&self) -> HashMap<String, ttrpc::asynchronous::Service> {
        let mut services = HashMap::new();
        for p in self.plugins.iter().filter(|p| p.init_error.is_none()) {
            if let Some(s) = &p.ttrpc {
                services.extend(s());
            }
        }
        services
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The router is built from the table: each started plugin's adder runs once, with the
    /// whole table; a plugin that failed to start serves nothing.
    #[test]
    fn routes_and_ttrpc_services_come_from_the_table() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut registry = PluginRegistry::default();
        for (id, failed) in [("one", false), ("two", false), ("broken", true)] {
            let c = calls.clone();
            let mut p = Plugin::new("io.containerd.grpc.v1", id, &[]).serves(move |reg, _| {
                assert_eq!(reg.plugins().len(), 4);
                c.fetch_add(1, Ordering::SeqCst);
            });
            if failed {
                p.init_error = Some("no".into());
            }
            registry.register(p);
        }
        registry.register(Plugin::new("io.containerd.event.v1", "exchange", &[]));
        let _routes = registry.grpc_routes();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(registry.ttrpc_services().is_empty());
    }
}
