//! The shim's command line, parsed as Go's `flag` package does, since containerd builds it for a
//! Go shim: `-name value`, `-name=value`, `--name value`; booleans take no separate value; parsing
//! stops at the first argument that is not a flag, which is the **action** (`start`, `delete`, or
//! none for the serving process).

use crate::error::{Result, ShimError};

/// The flags containerd passes to every invocation of a shim binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-namespace`: the containerd namespace of the task (required).
    pub namespace: String,
    /// `-id`: the task (container) id.
    pub id: String,
    /// `-address`: containerd's gRPC socket.
    pub address: String,
    /// `-publish-binary`: containerd's own binary, which shims of containerd ≤ 1.4 ran as
    /// `containerd publish` to send events. Accepted and unused: events go over ttrpc to
    /// `$TTRPC_ADDRESS`, as containerd 1.5+ expects.
    pub publish_binary: String,
    /// `-bundle`: the bundle directory, when it is not the working directory (given to `delete`).
    pub bundle: String,
    /// `-socket`: serve on this socket instead of the one inherited from `start`.
    pub socket: String,
    /// `-debug`: log at debug level.
    pub debug: bool,
    /// `-v`: print the version and exit.
    pub version: bool,
    /// The first non-flag argument.
    pub action: Option<String>,
    /// Arguments after the action.
    pub rest: Vec<String>,
}

impl Flags {
    /// Parse `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags> {
        let mut flags = Flags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let name = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
                Some("") if arg == "--" => break,
                Some(name) if !name.is_empty() && !name.starts_with('-') => name,
                _ => {
                    flags.action = Some(arg);
                    break;
                }
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if let Some(slot) = flags.bool_flag(name) {
                *slot = match inline.as_deref() {
                    None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") => true,
                    Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") => false,
                    Some(v) => {
                        return Err(ShimError::InvalidArgument(format!(
                            "flag -{name}: boolean value {v:?}"
                        )))
                    }
                };
                continue;
            }
            let Some(slot) = flags.string_flag(name) else {
                return Err(ShimError::InvalidArgument(format!(
                    "flag provided but not defined: -{name}"
                )));
            };
            *slot = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| {
                    ShimError::InvalidArgument(format!("flag needs an argument: -{name}"))
                })?,
            };
        }
        if flags.action.is_none() {
            flags.action = args.next();
        }
        flags.rest = args.collect();
        Ok(flags)
    }

    fn bool_flag(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "debug" => Some(&mut self.debug),
            "v" => Some(&mut self.version),
            _ => None,
        }
    }

    fn string_flag(&mut self, name: &str) -> Option<&mut String> {
        match name {
            "namespace" => Some(&mut self.namespace),
            "id" => Some(&mut self.id),
            "address" => Some(&mut self.address),
            "publish-binary" => Some(&mut self.publish_binary),
            "bundle" => Some(&mut self.bundle),
            "socket" => Some(&mut self.socket),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags> {
        Flags::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn containerd_start_command_line() {
        let f = parse(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "t1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.id, "t1");
        assert!(f.debug);
        assert_eq!(f.action.as_deref(), Some("start"));
    }

    #[test]
    fn go_flag_spellings() {
        let f = parse(&["--id=a", "-bundle=/b", "-debug=false", "delete", "x"]).unwrap();
        assert_eq!(f.id, "a");
        assert_eq!(f.bundle, "/b");
        assert!(!f.debug);
        assert_eq!(f.action.as_deref(), Some("delete"));
        assert_eq!(f.rest, vec!["x".to_string()]);
        let f = parse(&["-id", "a", "--", "start"]).unwrap();
        assert_eq!(f.action.as_deref(), Some("start"));
        assert_eq!(parse(&["-namespace", "n"]).unwrap().action, None);
    }

    #[test]
    fn unknown_or_incomplete_flags_are_refused() {
        let e = parse(&["-nope"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "flag provided but not defined: -nope: invalid argument"
        );
        assert!(parse(&["-id"]).is_err());
        assert!(parse(&["-debug=maybe"]).is_err());
    }
}
