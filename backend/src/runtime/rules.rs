//! The pure half of run-stage monitoring: how an exec session, a process list, a filesystem diff
//! and a restart history are judged, and which event becomes which finding. No I/O.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::posture::{CheckId, Severity};

/// Shells: an exec of one of these without a script (`-c`) is someone typing commands.
const SHELLS: &[&str] = &[
    "sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox",
];

/// Process names that stand out in a production container: shells, remote access, network
/// tools, package managers, compilers, interpreters started by hand, miners.
const SUSPICIOUS_PROCESSES: &[&str] = &[
    "sh",
    "ash",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "sshd",
    "ssh",
    "dropbear",
    "telnetd",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "nmap",
    "masscan",
    "tcpdump",
    "wget",
    "curl",
    "ftp",
    "tftp",
    "apt",
    "apt-get",
    "dpkg",
    "yum",
    "dnf",
    "rpm",
    "apk",
    "pip",
    "pip3",
    "npm",
    "gem",
    "gcc",
    "cc",
    "make",
    "xmrig",
    "minerd",
    "kworkerds",
];

/// Paths whose change in a running container is a finding: executables, libraries, accounts,
/// privilege and persistence configuration.
const SENSITIVE_PREFIXES: &[&str] = &[
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/lib/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/local/lib/",
    "/etc/sudoers.d/",
    "/etc/cron.d/",
    "/etc/cron.daily/",
    "/etc/cron.hourly/",
    "/etc/profile.d/",
    "/etc/init.d/",
    "/etc/systemd/",
    "/etc/ssh/",
    "/root/.ssh/",
    "/var/spool/cron/",
];
const SENSITIVE_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/crontab",
    "/etc/profile",
    "/root/.bashrc",
    "/root/.profile",
];
/// Pseudo filesystems the engine mounts: never drift.
const IGNORED_PREFIXES: &[&str] = &["/proc", "/sys", "/dev"];

/// What an exec session is, from its inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecFacts {
    /// The command line (entrypoint and arguments).
    pub command: String,
    /// The exec's `--user`; empty means the container's user.
    pub user: String,
    /// The container's configured user (`Config.User`); empty means root.
    pub container_user: String,
    pub privileged: bool,
    pub tty: bool,
    pub open_stdin: bool,
}

/// How an exec session is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecJudgement {
    pub shell: bool,
    /// A shell someone types into (a TTY, stdin open, or no `-c` script).
    pub interactive_shell: bool,
    /// The session runs as root (its own user, or the container's when it has none).
    pub root: bool,
    /// Privileged, or root in a container that otherwise runs as another user.
    pub elevated: bool,
    pub severity: Severity,
}

fn is_root(user: &str) -> bool {
    matches!(
        user.split(':').next().unwrap_or("").trim(),
        "" | "0" | "root"
    )
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

pub fn judge_exec(facts: &ExecFacts) -> ExecJudgement {
    let mut words = facts.command.split_whitespace();
    let program = words.next().map(basename).unwrap_or("");
    let rest: Vec<&str> = words.collect();
    // `busybox sh` runs the applet.
    let shell = SHELLS.contains(&program)
        && (program != "busybox" || rest.first().is_some_and(|w| SHELLS.contains(w)));
    let scripted = rest.contains(&"-c");
    let interactive_shell = shell && (facts.tty || facts.open_stdin || !scripted);
    let effective = if facts.user.trim().is_empty() {
        facts.container_user.as_str()
    } else {
        facts.user.as_str()
    };
    let root = is_root(effective);
    let elevated = facts.privileged
        || (!facts.user.trim().is_empty() && root && !is_root(&facts.container_user));
    let severity = if elevated {
        Severity::High
    } else if interactive_shell {
        Severity::Medium
    } else if shell || root {
        Severity::Low
    } else {
        Severity::Info
    };
    ExecJudgement {
        shell,
        interactive_shell,
        root,
        elevated,
        severity,
    }
}

/// Whether a changed path is an executable, a library or a system file that matters.
pub fn sensitive_path(path: &str) -> bool {
    SENSITIVE_FILES.contains(&path) || SENSITIVE_PREFIXES.iter().any(|p| path.starts_with(p))
}

fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

/// One entry of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Change {
    pub path: String,
    /// `added`, `changed` or `deleted`.
    pub kind: &'static str,
}

impl Change {
    pub fn from_docker(path: String, kind: u8) -> Self {
        let kind = match kind {
            1 => "added",
            2 => "deleted",
            _ => "changed",
        };
        Self { path, kind }
    }
}

/// The drift of a filesystem diff: changes outside the declared mounts (volumes, binds, tmpfs)
/// and the pseudo filesystems, without the directories that only changed because something in
/// them did.
pub fn fs_drift(changes: &[Change], mounts: &[String]) -> Vec<Change> {
    let kept: Vec<&Change> = changes
        .iter()
        .filter(|c| !IGNORED_PREFIXES.iter().any(|p| under(&c.path, p)))
        .filter(|c| !mounts.iter().any(|m| under(&c.path, m)))
        .collect();
    let paths: BTreeSet<&str> = kept.iter().map(|c| c.path.as_str()).collect();
    let mut out: Vec<Change> = kept
        .into_iter()
        .filter(|c| {
            c.kind != "changed"
                || !paths
                    .range::<str, _>((
                        std::ops::Bound::Excluded(c.path.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .is_some_and(|next| next.starts_with(&format!("{}/", c.path)))
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The mount destinations of a container inspect document: `.Mounts[].Destination` and the
/// keys of `.HostConfig.Tmpfs`.
pub fn mount_points(inspect: &Value) -> Vec<String> {
    let mut out: Vec<String> = inspect
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("Destination").and_then(Value::as_str))
        .map(String::from)
        .collect();
    if let Some(tmpfs) = inspect
        .pointer("/HostConfig/Tmpfs")
        .and_then(Value::as_object)
    {
        out.extend(tmpfs.keys().cloned());
    }
    out
}

/// The process names of a `docker top` answer: the `COMMAND` (comm) column when asked with
/// `-o comm`, else the base name of the first word of `CMD`.
pub fn process_names(titles: &[String], processes: &[Vec<String>]) -> BTreeSet<String> {
    let column = titles
        .iter()
        .position(|t| t == "COMMAND")
        .map(|i| (i, false))
        .or_else(|| titles.iter().position(|t| t == "CMD").map(|i| (i, true)));
    let Some((index, full)) = column else {
        return BTreeSet::new();
    };
    processes
        .iter()
        .filter_map(|row| row.get(index))
        .map(|value| {
            if full {
                basename(value.split_whitespace().next().unwrap_or("")).to_string()
            } else {
                value.trim().to_string()
            }
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The severity of processes outside the baseline: high when one of them stands out.
pub fn process_drift_severity(new: &BTreeSet<String>) -> Severity {
    if new
        .iter()
        .any(|name| SUSPICIOUS_PROCESSES.contains(&name.as_str()))
    {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// A finding an event opens (or keeps open).
#[derive(Debug, Clone, PartialEq)]
pub struct EventFinding {
    pub check: CheckId,
    pub severity: Severity,
    pub message: String,
}

/// The finding a runtime event opens, if any. Restart loops and drift are decided with their
/// history ([`crate::runtime`]); this covers the events that are findings by themselves.
pub fn finding_for(kind: &str, details: &Value) -> Option<EventFinding> {
    let flag = |name: &str| details.get(name).and_then(Value::as_bool).unwrap_or(false);
    let text = |name: &str| {
        details
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match kind {
        "exec_start" if flag("elevated") => Some(EventFinding {
            check: CheckId::RunExecPrivilegedOrRoot,
            severity: Severity::High,
            message: format!(
                "exec session {} as {}: {}",
                if flag("privileged") {
                    "privileged"
                } else {
                    "elevated"
                },
                text("effective_user"),
                text("command")
            ),
        }),
        "exec_start" if flag("interactive_shell") => Some(EventFinding {
            check: CheckId::RunExecInteractiveShell,
            severity: Severity::Medium,
            message: format!(
                "interactive shell as {}: {}",
                text("effective_user"),
                text("command")
            ),
        }),
        "ephemeral_container" => Some(if flag("elevated") {
            EventFinding {
                check: CheckId::RunExecPrivilegedOrRoot,
                severity: Severity::High,
                message: format!(
                    "elevated debug container {} ({})",
                    text("container"),
                    text("image")
                ),
            }
        } else {
            EventFinding {
                check: CheckId::RunExecInteractiveShell,
                severity: Severity::Medium,
                message: format!("debug container {} ({})", text("container"), text("image")),
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exec(command: &str, user: &str, container_user: &str) -> ExecFacts {
        ExecFacts {
            command: command.into(),
            user: user.into(),
            container_user: container_user.into(),
            ..ExecFacts::default()
        }
    }

    #[test]
    fn an_interactive_shell_is_medium_and_a_script_is_not_interactive() {
        let shell = judge_exec(&ExecFacts {
            tty: true,
            ..exec("/bin/bash", "", "1000")
        });
        assert!(shell.interactive_shell && !shell.root && !shell.elevated);
        assert_eq!(shell.severity, Severity::Medium);
        let script = judge_exec(&exec("sh -c id", "", "1000"));
        assert!(script.shell && !script.interactive_shell);
        assert_eq!(script.severity, Severity::Low);
        let plain = judge_exec(&exec("echo hello", "", "app"));
        assert_eq!(plain.severity, Severity::Info);
    }

    #[test]
    fn root_into_a_non_root_container_and_privileged_are_elevated() {
        assert!(judge_exec(&exec("id", "root", "1000")).elevated);
        assert!(judge_exec(&exec("id", "0:0", "app")).elevated);
        // The container's own user is root anyway: root, not elevated.
        let same = judge_exec(&exec("id", "root", ""));
        assert!(same.root && !same.elevated);
        let privileged = judge_exec(&ExecFacts {
            privileged: true,
            ..exec("id", "", "1000")
        });
        assert!(privileged.elevated);
        assert_eq!(privileged.severity, Severity::High);
    }

    #[test]
    fn fs_drift_skips_mounts_tmpfs_pseudo_filesystems_and_parent_directories() {
        let changes: Vec<Change> = [
            ("/usr", 0),
            ("/usr/bin", 0),
            ("/usr/bin/evil", 1),
            ("/data/file", 1),
            ("/run/secrets/x", 1),
            ("/etc/passwd", 0),
            ("/tmp", 0),
            ("/tmp/a", 1),
            ("/dev/shm/x", 1),
        ]
        .into_iter()
        .map(|(p, k)| Change::from_docker(p.into(), k))
        .collect();
        let drift = fs_drift(&changes, &["/data".into(), "/run/secrets".into()]);
        let paths: Vec<&str> = drift.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/etc/passwd", "/tmp/a", "/usr/bin/evil"]);
        assert!(sensitive_path("/usr/bin/evil") && sensitive_path("/etc/passwd"));
        assert!(!sensitive_path("/tmp/a") && !sensitive_path("/usr/bin"));
    }

    #[test]
    fn process_names_come_from_comm_or_the_command_line() {
        let comm = process_names(
            &["PID".into(), "USER".into(), "COMMAND".into()],
            &[
                vec!["1".into(), "root".into(), "sleep".into()],
                vec!["2".into(), "root".into(), "busyboxzz".into()],
            ],
        );
        assert_eq!(comm.into_iter().collect::<Vec<_>>(), ["busyboxzz", "sleep"]);
        let cmd = process_names(
            &["UID".into(), "PID".into(), "CMD".into()],
            &[vec!["root".into(), "1".into(), "/usr/sbin/sshd -D".into()]],
        );
        assert!(cmd.contains("sshd"));
        assert_eq!(process_drift_severity(&cmd), Severity::High);
    }

    #[test]
    fn exec_and_debug_events_map_to_their_checks() {
        let shell = finding_for(
            "exec_start",
            &json!({"interactive_shell": true, "command": "sh", "effective_user": "root"}),
        )
        .unwrap();
        assert_eq!(shell.check, CheckId::RunExecInteractiveShell);
        let root = finding_for("exec_start", &json!({"elevated": true})).unwrap();
        assert_eq!(root.check, CheckId::RunExecPrivilegedOrRoot);
        assert!(finding_for("exec_create", &json!({"elevated": true})).is_none());
        assert!(finding_for("exec_start", &json!({"command": "echo"})).is_none());
        assert_eq!(
            finding_for("ephemeral_container", &json!({"container": "debugger"}))
                .unwrap()
                .check,
            CheckId::RunExecInteractiveShell
        );
    }
}
