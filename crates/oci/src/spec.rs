//! Putting a spec together: the image's defaults, the run options and the safe defaults.

use std::path::Path;

use oci_spec::runtime::{
    Linux, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids, LinuxResources,
    Mount, Process, Root, Spec, User,
};

use crate::defaults::{self, DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS, SPEC_VERSION};
use crate::error::{OciError, Result};
use crate::etc::EtcFiles;
use crate::image::ImageDefaults;
use crate::options::{BindMount, NetworkMode, Resources, CPU_PERIOD};
use crate::user::UserDb;

/// What `run` decides about a container beyond what its image says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The container id (also the default cgroup leaf).
    pub id: String,
    /// The namespace (the default cgroup parent, as containerd's `WithNamespacedCgroup`).
    pub namespace: String,
    /// Arguments replacing the image's cmd (empty: the image's cmd).
    pub args: Vec<String>,
    /// An entrypoint replacing the image's (which also drops the image's cmd, as in Docker).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value` entries, overriding the image's by key.
    pub env: Vec<String>,
    /// Working directory replacing the image's (absolute).
    pub workdir: Option<String>,
    /// User replacing the image's (`user`, `uid`, `user:group`, …).
    pub user: Option<String>,
    /// Give the process a terminal (the shim allocates it).
    pub tty: bool,
    /// `-v` bind mounts, in order.
    pub mounts: Vec<BindMount>,
    pub resources: Resources,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    pub network: NetworkMode,
    /// A private cgroup namespace.
    pub cgroup_ns: bool,
    /// `--cap-add` and `--cap-drop` names.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The container's hostname (empty: none set, the runtime's default).
    pub hostname: String,
    /// Host files bind-mounted at `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
    pub etc_files: Option<EtcFiles>,
    /// `process.oomScoreAdj`; clamp it with [`crate::restrict_oom_score_adj`] first.
    pub oom_score_adj: Option<i32>,
    /// The cgroup path (default `/<namespace>/<id>`).
    pub cgroups_path: Option<String>,
}

/// `base` with each `KEY=value` of `overrides` replacing the entry of the same key (in place)
/// or appended. An entry without `=` or with an empty key is refused.
pub fn merge_env(base: &[String], overrides: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(base.len() + overrides.len());
    for entry in base.iter().chain(overrides) {
        let key = match entry.split_once('=') {
            Some((k, _)) if !k.is_empty() => k,
            _ => return Err(OciError::invalid(format!("environment entry {entry:?}"))),
        };
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map(|p| p.0) == Some(key))
        {
            Some(existing) => *existing = entry.clone(),
            None => out.push(entry.clone()),
        }
    }
    Ok(out)
}

fn has_key(env: &[String], key: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').map(|p| p.0) == Some(key))
}

/// The runtime spec of a container made from an image with `image` defaults and user database
/// `users`, run with `opts`.
pub fn generate(image: &ImageDefaults, users: &UserDb, opts: &RunOptions) -> Result<Spec> {
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(e) => (e.clone(), opts.args.clone()),
        None if !opts.args.is_empty() => (image.entrypoint.clone(), opts.args.clone()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(OciError::invalid(format!(
            "container {}: no command given and the image has none",
            opts.id
        )));
    }
    let user_str = opts.user.as_deref().unwrap_or(&image.user);
    let user = users.resolve(user_str)?;

    let mut base = vec![DEFAULT_PATH.to_string()];
    if !opts.hostname.is_empty() {
        base.push(format!("HOSTNAME={}", opts.hostname));
    }
    let mut env = merge_env(&merge_env(&base, &image.env)?, &opts.env)?;
    if opts.tty && !has_key(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    if !has_key(&env, "HOME") {
        env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }

    let cwd = match opts.workdir.as_deref() {
        Some(w) => w,
        None if !image.working_dir.is_empty() => &image.working_dir,
        None => "/",
    };
    if !cwd.starts_with('/') {
        return Err(OciError::invalid(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }

    let caps = defaults::capabilities(&opts.cap_add, &opts.cap_drop)?;
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(caps.clone()));
    capabilities.set_permitted(Some(caps.clone()));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);

    let mut process_user = User::default();
    process_user.set_uid(user.uid);
    process_user.set_gid(user.gid);
    process_user.set_additional_gids(Some(user.additional_gids.clone()));

    let mut process = Process::default();
    process.set_terminal(Some(opts.tty));
    process.set_user(process_user);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(cwd.into());
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(Some(defaults::rlimits()));
    process.set_no_new_privileges(Some(true));
    process.set_oom_score_adj(opts.oom_score_adj);

    let mut root = Root::default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(opts.read_only));

    let mut linux = Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(None);
    linux.set_devices(None);
    linux.set_namespaces(Some(defaults::namespaces(
        opts.network != NetworkMode::Host,
        opts.cgroup_ns,
    )));
    linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
    linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    linux.set_resources(Some(resources(&opts.resources)));
    linux.set_cgroups_path(Some(
        opts.cgroups_path
            .clone()
            .unwrap_or_else(|| format!("/{}/{}", opts.namespace, opts.id))
            .into(),
    ));
    linux.set_seccomp(Some(crate::seccomp::default_profile(&caps)));

    let mut spec = Spec::default();
    spec.set_version(SPEC_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_hostname((!opts.hostname.is_empty()).then(|| opts.hostname.clone()));
    spec.set_mounts(Some(mounts(opts)));
    spec.set_linux(Some(linux));
    spec.set_annotations(None);
    Ok(spec)
}

/// The default mounts, then the `/etc` files, then the user's binds; a later mount on the same
/// destination replaces an earlier one.
fn mounts(opts: &RunOptions) -> Vec<Mount> {
    let mut all = defaults::default_mounts();
    if let Some(f) = &opts.etc_files {
        for (host, dest) in [
            (&f.hostname, "/etc/hostname"),
            (&f.hosts, "/etc/hosts"),
            (&f.resolv_conf, "/etc/resolv.conf"),
        ] {
            all.push(defaults::bind_mount(
                &host.display().to_string(),
                dest,
                false,
            ));
        }
    }
    for m in &opts.mounts {
        all.push(defaults::bind_mount(&m.source, &m.destination, m.read_only));
    }
    let mut out: Vec<Mount> = Vec::with_capacity(all.len());
    for m in all.into_iter().rev() {
        if !out.iter().any(|o| o.destination() == m.destination()) {
            out.push(m);
        }
    }
    out.reverse();
    out
}

fn resources(r: &Resources) -> LinuxResources {
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_access(Some("rwm".to_string()));
    let mut out = LinuxResources::default();
    out.set_devices(Some(vec![deny_all]));
    if r.memory.is_some() || r.memory_swap.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(r.memory);
        m.set_swap(r.memory_swap);
        out.set_memory(Some(m));
    }
    if let Some(cpus) = r.cpus {
        let mut c = LinuxCpu::default();
        c.set_quota(Some(Resources::cpu_quota(cpus)));
        c.set_period(Some(CPU_PERIOD));
        out.set_cpu(Some(c));
    }
    if let Some(limit) = r.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(if limit > 0 { limit } else { -1 });
        out.set_pids(Some(p));
    }
    out
}

/// The process of an exec into a container with `spec`: the container's process (user,
/// capabilities, rlimits, no-new-privileges) with `args`, a terminal or not, `env` merged over
/// the container's and `cwd` if given.
pub fn exec_process(
    spec: &Spec,
    args: Vec<String>,
    tty: bool,
    env: &[String],
    cwd: Option<&str>,
) -> Result<Process> {
    if args.is_empty() {
        return Err(OciError::invalid("exec: no command given"));
    }
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| OciError::invalid("container spec has no process"))?;
    p.set_args(Some(args));
    p.set_terminal(Some(tty));
    p.set_console_size(None);
    let base = p.env().clone().unwrap_or_default();
    let mut merged = merge_env(&base, env)?;
    if tty && !has_key(&merged, "TERM") {
        merged.push("TERM=xterm".to_string());
    }
    p.set_env(Some(merged));
    if let Some(cwd) = cwd {
        if !cwd.starts_with('/') {
            return Err(OciError::invalid(format!(
                "working directory {cwd:?} is not absolute"
            )));
        }
        p.set_cwd(Path::new(cwd).to_path_buf());
    }
    Ok(p)
}
