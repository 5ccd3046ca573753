//! The container's cgroup: statistics for `Stats` (containerd's `ctr task metrics`) and OOM
//! notifications.
//!
//! The runtime puts the container's processes in a cgroup; the shim finds it from
//! `/proc/<init pid>/cgroup` and the cgroup mounts in `/proc/self/mountinfo`:
//! - **cgroup v1** (also the "hybrid" layout, where v1 controllers are mounted beside an empty
//!   cgroup2 at `/sys/fs/cgroup/unified`): one directory per controller. Stats are containerd's
//!   `io.containerd.cgroups.v1.Metrics`; OOM kills are announced on an *eventfd* registered
//!   through `cgroup.event_control` for `memory.oom_control`.
//! - **cgroup v2** (unified): one directory. Stats are `io.containerd.cgroups.v2.Metrics`; OOM
//!   kills are counted in `memory.events` (`oom_kill`), watched with inotify.

mod stats;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread;

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::error::{Result, ShimError};

/// Type URL of containerd's cgroup v1 metrics.
pub const V1_METRICS: &str = berth_core::type_urls::CGROUPS_V1_METRICS;
/// Type URL of containerd's cgroup v2 metrics.
pub const V2_METRICS: &str = berth_core::type_urls::CGROUPS_V2_METRICS;

/// Where a process's cgroup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// Controller name (`memory`, `cpuacct`, …) → its directory.
    V1(HashMap<String, PathBuf>),
    /// The unified directory.
    V2(PathBuf),
}

impl Cgroup {
    /// The cgroup of process `pid`.
    pub fn of_pid(pid: u32) -> Result<Cgroup> {
        let read =
            |p: &str| fs::read_to_string(p).map_err(|e| ShimError::io(format!("read {p}"), e));
        let membership = read(&format!("/proc/{pid}/cgroup"))?;
        let mountinfo = read("/proc/self/mountinfo")?;
        Cgroup::resolve(&membership, &mountinfo)
            .ok_or_else(|| ShimError::NotFound(format!("cgroup of process {pid}")))
    }

    /// Resolve `/proc/<pid>/cgroup` lines against mount points. v1 wins when the process is in
    /// any v1 controller (hybrid hosts); v2 only when a cgroup2 mount has controllers.
    pub fn resolve(membership: &str, mountinfo: &str) -> Option<Cgroup> {
        // mountinfo: id parent maj:min root mountpoint opts... - fstype source superopts
        let mounts: Vec<(&str, &str, &str, &str)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split(' ').collect();
                let r: Vec<&str> = right.split(' ').collect();
                Some((
                    *r.first()?,
                    *f.get(3)?,
                    *f.get(4)?,
                    *r.get(2).unwrap_or(&""),
                ))
            })
            .filter(|(fstype, ..)| *fstype == "cgroup" || *fstype == "cgroup2")
            .collect();
        let under = |root: &str, mnt: &str, path: &str| {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(path)
                .trim_start_matches('/');
            Path::new(mnt).join(rel)
        };
        let mut v1 = HashMap::new();
        let mut v2 = None;
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            if controllers.is_empty() {
                let mount = mounts.iter().find(|m| m.0 == "cgroup2")?;
                v2 = Some(under(mount.1, mount.2, path));
                continue;
            }
            for c in controllers.split(',') {
                if let Some(m) = mounts
                    .iter()
                    .find(|m| m.0 == "cgroup" && m.3.split(',').any(|o| o == c))
                {
                    v1.insert(
                        c.trim_start_matches("name=").to_string(),
                        under(m.1, m.2, path),
                    );
                }
            }
        }
        if v1.contains_key("memory") || v1.contains_key("cpuacct") || v1.contains_key("pids") {
            return Some(Cgroup::V1(v1));
        }
        v2.filter(|p| p.join("cgroup.controllers").exists() || p.join("cgroup.procs").exists())
            .map(Cgroup::V2)
    }

    /// True while the cgroup directory exists.
    pub fn exists(&self) -> bool {
        match self {
            Cgroup::V1(dirs) => dirs
                .get("memory")
                .or(dirs.values().next())
                .is_some_and(|d| d.exists()),
            Cgroup::V2(dir) => dir.exists(),
        }
    }

    /// The cgroup's statistics as containerd's metrics message.
    pub fn stats(&self) -> Result<Any> {
        if !self.exists() {
            return Err(ShimError::NotFound("cgroup of the task".into()));
        }
        Ok(match self {
            Cgroup::V1(dirs) => crate::events::any(V1_METRICS, &stats::v1(dirs)),
            Cgroup::V2(dir) => crate::events::any(V2_METRICS, &stats::v2(dir)),
        })
    }

    /// Call `on_oom` (from a thread) each time the kernel's OOM killer acts in this cgroup,
    /// until the cgroup is removed.
    pub fn watch_oom(&self, on_oom: impl Fn() + Send + 'static) -> Result<()> {
        match self {
            Cgroup::V1(dirs) => {
                let dir = dirs
                    .get("memory")
                    .ok_or_else(|| ShimError::NotFound("memory cgroup".into()))?
                    .clone();
                watch_v1(dir, on_oom)
            }
            Cgroup::V2(dir) => watch_v2(dir.clone(), on_oom),
        }
    }
}

fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<()> {
    let err =
        |what: &str, e: std::io::Error| ShimError::io(format!("{what} in {}", dir.display()), e);
    let control = File::open(dir.join("memory.oom_control"))
        .map_err(|e| err("open memory.oom_control", e))?;
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
        .map_err(|e| err("eventfd", e.into()))?;
    let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    fs::write(dir.join("cgroup.event_control"), line)
        .map_err(|e| err("write cgroup.event_control", e))?;
    thread::Builder::new()
        .name("oom".into())
        .spawn(move || {
            let _control = control;
            let mut efd = File::from(efd);
            let mut count = [0u8; 8];
            // The eventfd also fires when the cgroup is removed: then the watch ends.
            while efd.read_exact(&mut count).is_ok() {
                if !dir.join("memory.oom_control").exists() {
                    break;
                }
                on_oom();
            }
        })
        .map_err(|e| ShimError::io("start oom watcher", e))?;
    Ok(())
}

fn watch_v2(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<()> {
    use rustix::fs::inotify;
    let events = dir.join("memory.events");
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC)
        .map_err(|e| ShimError::io("inotify", e.into()))?;
    inotify::add_watch(&fd, &events, inotify::WatchFlags::MODIFY)
        .map_err(|e| ShimError::io(format!("watch {}", events.display()), e.into()))?;
    let oom_kills = |p: &Path| stats::keyed(&fs::read_to_string(p).unwrap_or_default(), "oom_kill");
    let mut seen = oom_kills(&events);
    thread::Builder::new()
        .name("oom".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::uninit(); 1024];
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            loop {
                match reader.next() {
                    Ok(ev) if ev.events().contains(inotify::ReadFlags::IGNORED) => break,
                    Ok(_) => {
                        let now = oom_kills(&events);
                        if now > seen {
                            on_oom();
                        }
                        seen = now;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => break,
                }
            }
        })
        .map_err(|e| ShimError::io("start oom watcher", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:16 - cgroup cgroup rw,cpu,cpuacct
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid shared:17 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/systemd rw,nosuid shared:18 - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn hybrid_hosts_use_the_v1_controllers() {
        let membership = "\
12:pids:/default/t1
4:cpu,cpuacct:/default/t1
3:memory:/default/t1
1:name=systemd:/default/t1
0::/default/t1
";
        let Some(Cgroup::V1(dirs)) = Cgroup::resolve(membership, MOUNTINFO) else {
            panic!("want v1");
        };
        assert_eq!(
            dirs["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/default/t1")
        );
        assert_eq!(
            dirs["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/default/t1")
        );
        assert_eq!(
            dirs["systemd"],
            PathBuf::from("/sys/fs/cgroup/systemd/default/t1")
        );
    }

    #[test]
    fn unified_hosts_use_v2() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("default/t1");
        fs::create_dir_all(&cg).unwrap();
        fs::write(cg.join("cgroup.controllers"), "memory pids").unwrap();
        let mountinfo = format!(
            "25 30 0:22 / {} rw shared:9 - cgroup2 cgroup2 rw\n",
            dir.path().display()
        );
        assert_eq!(
            Cgroup::resolve("0::/default/t1\n", &mountinfo),
            Some(Cgroup::V2(cg))
        );
        assert_eq!(Cgroup::resolve("0::/gone\n", &mountinfo), None);
    }
}
