//! Who the container's process runs as: a user string (`user`, `uid`, `user:group`, `uid:gid`,
//! `uid:group`, `user:gid`, as the OCI image spec allows in `config.User`) resolved against the
//! image's own `/etc/passwd` and `/etc/group`, as containerd's `oci.WithUser` and
//! `oci.WithAdditionalGIDs` do.

use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{OciError, Result};

/// The largest `/etc/passwd` or `/etc/group` read (a user database is small; a huge file is
/// garbage or hostile).
const MAX_DB_FILE: u64 = 4 << 20;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// The users listed as members (supplementary, not those whose primary group it is).
    pub members: Vec<String>,
}

/// An image's user database: its `/etc/passwd` and `/etc/group`, either of which may be absent
/// (empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

/// A user string resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the groups that list the user as a member.
    pub additional_gids: Vec<u32>,
    /// The user's home directory, when `/etc/passwd` names the user.
    pub home: Option<String>,
}

/// True when resolving `user` needs the image's user database: anything but `uid:gid` in
/// numbers (a bare uid is looked up for its primary group, a name for its ids).
pub fn needs_lookup(user: &str) -> bool {
    match user.split_once(':') {
        Some((u, g)) => u.parse::<u32>().is_err() || g.parse::<u32>().is_err(),
        None => true,
    }
}

impl UserDb {
    /// Parse the text of `/etc/passwd` and `/etc/group`; malformed lines are skipped, as libc
    /// skips them.
    pub fn parse(passwd: &str, group: &str) -> UserDb {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.trim_end().split(':').collect();
                if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
                    return None;
                }
                Some(PasswdEntry {
                    name: f[0].to_string(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.trim_end().split(':').collect();
                if f.len() < 3 || f[0].is_empty() || f[0].starts_with('#') {
                    return None;
                }
                Some(GroupEntry {
                    name: f[0].to_string(),
                    gid: f[2].parse().ok()?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        UserDb { users, groups }
    }

    /// Read `etc/passwd` and `etc/group` of the root filesystem mounted at `rootfs`, resolving
    /// every path component (symlinks included) inside `rootfs`, as if chrooted there. A file
    /// that does not exist reads as empty.
    pub fn read(rootfs: &Path) -> Result<UserDb> {
        let passwd = read_in_root(rootfs, "etc/passwd")?;
        let group = read_in_root(rootfs, "etc/group")?;
        Ok(UserDb::parse(&passwd, &group))
    }

    /// Resolve `user` (empty: root) as containerd does: a name must be in `/etc/passwd` and a
    /// group name in `/etc/group`; a uid alone takes its primary group from `/etc/passwd`, or 0
    /// when it has no entry.
    pub fn resolve(&self, user: &str) -> Result<ResolvedUser> {
        let user = if user.is_empty() { "0" } else { user };
        let (uid, gid, entry) = match user.split_once(':') {
            None => match user.parse::<u32>() {
                Ok(uid) => match self.users.iter().find(|u| u.uid == uid) {
                    Some(e) => (e.uid, e.gid, Some(e)),
                    None => (uid, 0, None),
                },
                Err(_) => {
                    let e = self.user_named(user)?;
                    (e.uid, e.gid, Some(e))
                }
            },
            Some((u, g)) => {
                if u.contains(':') || g.contains(':') || u.is_empty() || g.is_empty() {
                    return Err(OciError::invalid(format!("user {user:?}")));
                }
                let (uid, entry) = match u.parse::<u32>() {
                    Ok(uid) => (uid, self.users.iter().find(|e| e.uid == uid)),
                    Err(_) => {
                        let e = self.user_named(u)?;
                        (e.uid, Some(e))
                    }
                };
                let gid = match g.parse::<u32>() {
                    Ok(gid) => gid,
                    Err(_) => {
                        self.groups
                            .iter()
                            .find(|e| e.name == g)
                            .ok_or_else(|| {
                                OciError::NotFound(format!("group {g:?} in the image's /etc/group"))
                            })?
                            .gid
                    }
                };
                (uid, gid, entry)
            }
        };
        let mut additional_gids = vec![gid];
        if let Some(e) = entry {
            for g in &self.groups {
                if g.name != e.name
                    && g.members.contains(&e.name)
                    && !additional_gids.contains(&g.gid)
                {
                    additional_gids.push(g.gid);
                }
            }
        }
        Ok(ResolvedUser {
            uid,
            gid,
            additional_gids,
            home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()),
        })
    }

    fn user_named(&self, name: &str) -> Result<&PasswdEntry> {
        self.users
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| OciError::NotFound(format!("user {name:?} in the image's /etc/passwd")))
    }
}

/// The text of `path` inside `root`, resolved with `RESOLVE_IN_ROOT` (absolute symlinks and
/// `..` stay inside); empty when it does not exist.
fn read_in_root(root: &Path, path: &str) -> Result<String> {
    let shown = root.join(path).display().to_string();
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OciError::io(root.display())(e.into()))?;
    let fd = match rustix::fs::openat2(
        &dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(OciError::io(&shown)(e.into())),
    };
    let file = std::fs::File::from(fd);
    let mut buf = Vec::new();
    file.take(MAX_DB_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(OciError::io(&shown))?;
    if buf.len() as u64 > MAX_DB_FILE {
        return Err(OciError::invalid(format!(
            "{shown} is larger than {MAX_DB_FILE} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
        # a comment\n\
        broken line\n\
        www:x:33:33:www-data:/var/www:/bin/false\n\
        nobody:x:65534:65534:nobody:/home:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,www\n\
        www:x:33:www\n\
        audio:x:29:www\n\
        nogroup:x:65534:\n";

    fn db() -> UserDb {
        UserDb::parse(PASSWD, GROUP)
    }

    #[test]
    fn names_resolve_through_passwd_and_group() {
        let u = db().resolve("www").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        // Primary first; `www` lists itself in its own group, which is not supplementary.
        assert_eq!(u.additional_gids, [33, 10, 29]);
        assert_eq!(u.home.as_deref(), Some("/var/www"));
        let u = db().resolve("nobody").unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65534));
        assert_eq!(u.additional_gids, [65534]);
    }

    #[test]
    fn empty_is_root_with_roots_groups() {
        let u = db().resolve("").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, [0, 10]);
        assert_eq!(u.home.as_deref(), Some("/root"));
    }

    #[test]
    fn a_bare_uid_takes_its_group_from_passwd_or_zero() {
        let u = db().resolve("1").unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
        let u = db().resolve("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 0, None));
        assert_eq!(UserDb::default().resolve("7").unwrap().uid, 7);
    }

    #[test]
    fn pairs_mix_names_and_numbers() {
        assert_eq!(db().resolve("1000:1000").unwrap().gid, 1000);
        let u = db().resolve("www:audio").unwrap();
        assert_eq!((u.uid, u.gid), (33, 29));
        let u = db().resolve("33:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (33, 10));
        let u = db().resolve("daemon:5").unwrap();
        assert_eq!((u.uid, u.gid), (1, 5));
    }

    #[test]
    fn unknown_names_and_bad_strings_fail_clearly() {
        let e = db().resolve("ghost").unwrap_err();
        assert_eq!(
            e.to_string(),
            "user \"ghost\" in the image's /etc/passwd: not found"
        );
        let e = db().resolve("www:ghosts").unwrap_err();
        assert_eq!(
            e.to_string(),
            "group \"ghosts\" in the image's /etc/group: not found"
        );
        let e = db().resolve("a:b:c").unwrap_err();
        assert_eq!(e.to_string(), "user \"a:b:c\": invalid argument");
        assert!(db().resolve(":0").is_err());
    }

    #[test]
    fn only_numeric_pairs_skip_the_lookup() {
        assert!(!needs_lookup("0:0"));
        assert!(!needs_lookup("1000:100"));
        assert!(needs_lookup(""));
        assert!(needs_lookup("1000"));
        assert!(needs_lookup("nobody"));
        assert!(needs_lookup("1000:staff"));
    }

    #[test]
    fn files_are_read_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/group"), GROUP).unwrap();
        // An absolute symlink is resolved inside the root, not on the host.
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        let db = UserDb::read(root.path()).unwrap();
        assert!(db.users.is_empty(), "{db:?}");
        assert_eq!(db.groups.len(), 5);
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(UserDb::read(root.path()).unwrap().users.len(), 4);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(UserDb::read(empty.path()).unwrap(), UserDb::default());
    }
}
