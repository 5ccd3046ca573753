//! A container's confinement checked from inside it: `berth run --rm` of the busybox test image
//! with the defaults (berth-oci's, containerd's), a shell script probing each property and
//! printing `name=value` lines that the test then checks one by one, each failure naming the
//! property. Probed: the capability sets (containerd's default 14 capabilities, nothing more),
//! no-new-privileges, seccomp in filter mode, namespace creation refused (busybox's `unshare`
//! applet: `unshare -U`, `unshare -m`), masked /proc and /sys files, read-only /sys and
//! /proc/sys, block devices unusable, and berthd's own directories (the harness's temp dir:
//! root, state, sockets) out of sight.

use std::collections::BTreeMap;

use berth_integration_tests::cli::berth;
use berth_integration_tests::tasks::TaskCleanup;
use berth_integration_tests::{ok, setup, Berthd};

/// containerd's (and Docker's) default capability set as a /proc/<pid>/status mask: CHOWN(0),
/// DAC_OVERRIDE(1), FOWNER(3), FSETID(4), KILL(5), SETGID(6), SETUID(7), SETPCAP(8),
/// NET_BIND_SERVICE(10), NET_RAW(13), SYS_CHROOT(18), MKNOD(27), AUDIT_WRITE(29), SETFCAP(31).
const DEFAULT_CAPS: &str = "00000000a80425fb";

/// The probes, run by busybox's sh as root in the container. `$1` is berthd's temp dir on the
/// host. Every probe prints one `name=value` line; the script itself always exits 0.
const PROBES: &str = r#"
host="$1"
for f in CapEff CapPrm CapBnd CapAmb NoNewPrivs Seccomp; do
  echo "$f=$(grep "^$f:" /proc/self/status | cut -f2)"
done
# Masked: a character device (/dev/null bound over it) or an empty directory.
for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do
  if [ ! -e "$f" ]; then echo "masked:$f=absent"
  elif [ -c "$f" ]; then echo "masked:$f=null:$(wc -c < "$f")"
  else echo "masked:$f=visible"; fi
done
echo "masked:/sys/firmware=entries:$(ls -A /sys/firmware 2>/dev/null | wc -l)"
# Read-only.
echo "write:/sys=$(touch /sys/berth-probe 2>&1 && echo written)"
echo "write:/proc/sys=$( (echo 1 > /proc/sys/kernel/domainname) 2>&1 && echo written)"
if [ -e /proc/sysrq-trigger ]; then
  echo "write:/proc/sysrq-trigger=$( (echo h > /proc/sysrq-trigger) 2>&1 && echo written)"
else echo "write:/proc/sysrq-trigger=absent"; fi
# Namespaces: seccomp refuses unshare without CAP_SYS_ADMIN (which root here lacks).
echo "unshare-U=$(unshare -U true 2>&1 && echo created)"
echo "unshare-m=$(unshare -m true 2>&1 && echo created)"
echo "unshare-n=$(unshare -n true 2>&1 && echo created)"
# A block device (loop0): mknod may succeed (CAP_MKNOD; runc allows "b *:* m"), using it must not.
if mknod /tmp/probe-blk b 7 0 2>/tmp/mknod.err; then
  echo "mknod-b=made"
  echo "open-b=$(dd if=/tmp/probe-blk of=/dev/null bs=512 count=1 2>&1 && echo opened)"
else
  echo "mknod-b=refused:$(cat /tmp/mknod.err)"
  echo "open-b=not made"
fi
# Mounting is refused (no CAP_SYS_ADMIN, and seccomp).
mkdir -p /tmp/mnt
echo "mount-tmpfs=$(mount -t tmpfs none /tmp/mnt 2>&1 && echo mounted)"
# berthd's directories on the host.
echo "host-dir=$(ls -d "$host" "$host/state" "$host/root" "$host/berthd.sock" 2>/dev/null | wc -l)"
# Informational: mounts naming the temp dir are the container's own root and /etc files.
echo "host-mounts=$(grep -c -F "$host" /proc/self/mountinfo)"
exit 0
"#;

/// The probe lines as a map; a probe missing from the output is an empty string.
fn probes(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn a_default_container_is_confined_as_containerds() {
    let test = "a_default_container_is_confined_as_containerds";
    let Some(s) = setup(test, &["containerd-shim-runc-v2", "runc", "ctr"]) else {
        return;
    };
    let ns = "berth-isolation";
    let b: Berthd = s.berthd_with(ns, "busybox", false);
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let host = b.dir.path().display().to_string();
    let out = ok(
        berth(
            &b,
            ns,
            &["run", "--rm", "busybox", "sh", "-c", PROBES, "probe", &host],
        ),
        "berth run --rm busybox (isolation probes)",
    );
    println!("{test}: probes from inside the container:\n{out}");
    let p = probes(&out);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let mut failures = Vec::new();
    let mut check = |what: &str, held: bool, key: &str| {
        if !held {
            failures.push(format!("{what} ({key}={:?})", get(key)));
        }
    };

    for set in ["CapEff", "CapPrm", "CapBnd"] {
        check(
            &format!("{set}: containerd's default capabilities only"),
            get(set) == DEFAULT_CAPS,
            set,
        );
    }
    check(
        "CapAmb: no ambient capabilities",
        get("CapAmb") == "0000000000000000",
        "CapAmb",
    );
    check(
        "no-new-privileges set",
        get("NoNewPrivs") == "1",
        "NoNewPrivs",
    );
    check(
        "seccomp in filter mode (2)",
        get("Seccomp") == "2",
        "Seccomp",
    );
    for f in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ] {
        let key = format!("masked:{f}");
        let v = get(&key);
        check(
            &format!("{f} masked (empty /dev/null or absent)"),
            v == "null:0" || v == "absent",
            &key,
        );
    }
    check(
        "/sys/firmware masked (empty)",
        get("masked:/sys/firmware") == "entries:0",
        "masked:/sys/firmware",
    );
    for (key, what) in [
        ("write:/sys", "/sys read-only (EROFS)"),
        ("write:/proc/sys", "/proc/sys read-only"),
        (
            "write:/proc/sysrq-trigger",
            "/proc/sysrq-trigger read-only (or absent: no kernel support)",
        ),
    ] {
        let v = get(key);
        check(
            what,
            !v.contains("written")
                && (v.contains("Read-only") || v.contains("denied") || v == "absent"),
            key,
        );
    }
    for (key, what) in [
        ("unshare-U", "unshare -U (a user namespace) refused"),
        ("unshare-m", "unshare -m (a mount namespace) refused"),
        ("unshare-n", "unshare -n (a network namespace) refused"),
    ] {
        let v = get(key);
        check(
            what,
            !v.contains("created") && v.contains("not permitted"),
            key,
        );
    }
    let open = get("open-b");
    check(
        "a block device (loop0) cannot be used: mknod refused, or the node unopenable",
        !open.contains("opened") && (get("mknod-b").starts_with("refused") || !open.is_empty()),
        "open-b",
    );
    let mounted = get("mount-tmpfs");
    check(
        "mount refused",
        !mounted.contains("mounted") && !mounted.is_empty(),
        "mount-tmpfs",
    );
    check(
        "berthd's directories (root, state, socket) not visible",
        get("host-dir") == "0",
        "host-dir",
    );
    assert!(
        failures.is_empty(),
        "{test}: not confined:\n  {}\nprobes:\n{out}",
        failures.join("\n  ")
    );
}
