//! 1.F Identity: who the process runs as. Docker's `.Config.User` is the effective value
//! (`user[:group]`, E14); Kubernetes resolves container-then-pod (E3); user namespaces
//! downgrade rather than pass (E14); `hostUsers: false` relaxes the PSS checks (≥v1.35).

use super::{s, Eval};
use crate::posture::catalog::{CheckId, Severity};
use crate::posture::spec::{DockerUser, NsMode, Pointer, UserPart, Val};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    runs_as_root(e);
    run_as_non_root_unset(e);
    run_as_user_zero(e);
    root_group(e);
    low_uid_gid(e);
}

fn user_label(user: &UserPart) -> Val<'_> {
    match user {
        UserPart::Empty => Val::Str("root (unset)"),
        UserPart::Id(0) => Val::Str("root"),
        UserPart::Id(id) => Val::Int(*id),
        UserPart::Name(name) if &**name == "root" => Val::Str("root"),
        UserPart::Name(name) => s(name),
    }
}

/// Windows accounts with administrator rights: `ContainerAdministrator` in a container, and
/// `NT AUTHORITY\SYSTEM` / an `Administrator` on the host (HostProcess containers).
fn windows_admin(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "containeradministrator"
        || lower.ends_with("\\system")
        || lower == "system"
        || lower.ends_with("administrator")
}

fn runs_as_root(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::UserRunsAsRoot;
    let spec = e.spec;
    let windows = spec.is_windows();
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let base = check.meta().severity;
        if let Some(d) = spec.docker.as_deref() {
            let user = &d.user.value.user;
            e.fld(Some(c), &d.user, user_label(user));
            if windows {
                match user {
                    UserPart::Name(name) if windows_admin(name) => {
                        e.outcome(check, Some(c), Outcome::Fail, "runs as an administrator account", start)
                    }
                    UserPart::Name(_) | UserPart::Id(_) => {
                        e.outcome(check, Some(c), Outcome::Pass, "runs as a non-administrator user", start)
                    }
                    UserPart::Empty => e.outcome(
                        check,
                        Some(c),
                        Outcome::Unknown,
                        "the user is the image default, which is not in the input",
                        start,
                    ),
                }
                return;
            }
            let remapped = e.ctx.daemon.is_some_and(|daemon| daemon.userns || daemon.rootless)
                && spec.pod.host_userns.value != NsMode::Host;
            match user {
                user if user.is_root() => {
                    let (severity, message) = if remapped {
                        (base.downgraded(), "runs as root, mapped to an unprivileged host user by the daemon's user namespace")
                    } else {
                        (base, "runs as root (UID 0)")
                    };
                    e.result(check, Some(c), Outcome::Fail, severity, message, start);
                }
                UserPart::Id(_) => e.outcome(check, Some(c), Outcome::Pass, "runs as a non-root UID", start),
                _ => e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "runs as a named user; whether it is root depends on the image's /etc/passwd",
                    start,
                ),
            }
            return;
        }
        if windows {
            let field = spec.eff(c, |sc| &sc.windows_user);
            match field.as_deref() {
                Some(name) if windows_admin(name) => {
                    e.fld(Some(c), field, Val::Str("administrator"));
                    e.outcome(check, Some(c), Outcome::Fail, "runs as an administrator account", start);
                }
                Some(name) => {
                    e.fld(Some(c), field, s(name));
                    e.outcome(check, Some(c), Outcome::Pass, "runs as a non-administrator user", start);
                }
                None => {
                    e.fld(Some(c), field, Val::Str("image default"));
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Unknown,
                        "runAsUserName is unset: the image default user decides",
                        start,
                    );
                }
            }
            return;
        }
        let userns = spec.pod.host_users.value == Some(false);
        let user = spec.eff(c, |sc| &sc.run_as_user);
        match user.value {
            Some(0) => {
                e.fld(Some(c), user, Val::Str("root"));
                let (severity, message) = if userns {
                    (base.downgraded(), "runs as UID 0 inside a user namespace (not host root)")
                } else {
                    (base, "runs as UID 0")
                };
                e.result(check, Some(c), Outcome::Fail, severity, message, start);
            }
            Some(uid) => {
                e.fld(Some(c), user, Val::Int(uid));
                e.outcome(check, Some(c), Outcome::Pass, "runs as a non-root UID", start);
            }
            None => {
                let non_root = spec.eff(c, |sc| &sc.run_as_non_root);
                e.fld(Some(c), user, Val::Str("image default"));
                if non_root.value == Some(true) {
                    e.fld(Some(c), non_root, Val::Bool(true));
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Pass,
                        "runAsNonRoot: the kubelet refuses to start it as root",
                        start,
                    );
                } else {
                    e.outcome(
                        check,
                        Some(c),
                        Outcome::Unknown,
                        "runAsUser is unset and runAsNonRoot is not true: the image's USER decides, and it is not in the input",
                        start,
                    );
                }
            }
        }
    });
}

fn run_as_non_root_unset(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::UserRunAsNonRootUnset;
    if !e.applies(check) {
        return;
    }
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let own = &c.sc.run_as_non_root;
        let pod = &spec.pod.sc.run_as_non_root;
        if spec.pod.host_users.value == Some(false) {
            e.fld(None, &spec.pod.host_users, Val::Str("user namespace"));
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "runs in a user namespace (hostUsers: false)",
                start,
            );
            return;
        }
        let (outcome, message) = match (own.value, pod.value) {
            (Some(false), _) => (Outcome::Fail, "the container sets runAsNonRoot: false"),
            (_, Some(false)) => (Outcome::Fail, "the pod sets runAsNonRoot: false"),
            (Some(true), _) => (Outcome::Pass, "runAsNonRoot: true"),
            (None, Some(true)) => (Outcome::Pass, "runAsNonRoot: true at pod level"),
            (None, None) => (
                Outcome::Fail,
                "runAsNonRoot is set neither on the container nor on the pod",
            ),
        };
        e.fld(Some(c), own, own.value.map_or(Val::Str("unset"), Val::Bool));
        if own.value != Some(true) || pod.value == Some(false) {
            e.fld(Some(c), pod, pod.value.map_or(Val::Str("unset"), Val::Bool));
        }
        e.outcome(check, Some(c), outcome, message, start);
    });
}

fn run_as_user_zero(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::UserRunAsUserZero;
    let spec = e.spec;
    if spec.is_windows() && spec.docker.is_some() {
        e.not_applicable(check, "Windows containers have no UID");
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if let Some(d) = spec.docker.as_deref() {
            let explicit_root = match &d.user.value.user {
                UserPart::Empty => false,
                user => user.is_root(),
            };
            e.fld(Some(c), &d.user, user_label(&d.user.value.user));
            if !explicit_root {
                e.outcome(check, Some(c), Outcome::Pass, "the user is not set to 0 / root explicitly", start);
                return;
            }
            let image = e
                .ctx
                .images
                .and_then(|images| c.image_id.as_deref().and_then(|id| images.get(id)));
            match image {
                Some(image) => {
                    let image_user = DockerUser::parse(image.user.as_deref().unwrap_or(""));
                    if image_user.user.is_root() && image.user.as_deref().is_some_and(|u| !u.is_empty()) {
                        e.outcome(
                            check,
                            Some(c),
                            Outcome::Pass,
                            "root comes from the image's USER, not from a run-time override (see user.runs_as_root)",
                            start,
                        );
                    } else {
                        e.outcome(check, Some(c), Outcome::Fail, "the user is set to root at run time (--user 0)", start);
                    }
                }
                None => e.outcome(
                    check,
                    Some(c),
                    Outcome::Unknown,
                    "runs as 0 / root; whether the image or the run set it needs the image config",
                    start,
                ),
            }
            return;
        }
        if spec.pod.host_users.value == Some(false) {
            e.fld(None, &spec.pod.host_users, Val::Str("user namespace"));
            e.outcome(check, Some(c), Outcome::Pass, "runs in a user namespace (hostUsers: false)", start);
            return;
        }
        let own = &c.sc.run_as_user;
        let pod = &spec.pod.sc.run_as_user;
        let mut zero = false;
        for field in [own, pod] {
            if field.value == Some(0) {
                zero = true;
                e.fld(Some(c), field, Val::Str("root"));
            }
        }
        if zero {
            e.outcome(check, Some(c), Outcome::Fail, "runAsUser is 0", start);
        } else {
            let field = spec.eff(c, |sc| &sc.run_as_user);
            e.fld(Some(c), field, field.value.map_or(Val::Str("unset"), Val::Int));
            e.outcome(check, Some(c), Outcome::Pass, "runAsUser is not 0", start);
        }
    });
}

fn root_group(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::UserRootGroup;
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut root = false;
        if let Some(d) = spec.docker.as_deref() {
            if let Some(group) = &d.user.value.group {
                if group.is_root() {
                    root = true;
                    e.fld(Some(c), &d.user, Val::Str("group root"));
                }
            }
            for (index, group) in d.group_add.iter().enumerate() {
                if matches!(&**group, "0" | "root") {
                    root = true;
                    let pointer = Pointer::item("")
                        .path("/HostConfig/GroupAdd")
                        .index(index as u32);
                    e.out.ev(pointer, s(group), Val::Str("group root"));
                }
            }
            if !root {
                e.fld(Some(c), &d.user, Val::Str("no root group"));
            }
        } else {
            let group = spec.eff(c, |sc| &sc.run_as_group);
            if group.value == Some(0) {
                root = true;
                e.fld(Some(c), group, Val::Str("group root"));
            }
            if let Some(index) = spec.pod.supplemental_groups.iter().position(|g| *g == 0) {
                root = true;
                let pointer = spec
                    .pointer(None, spec.pod.supplemental_groups_src)
                    .index(index as u32);
                e.out.ev(pointer, Val::Int(0), Val::Str("group root"));
            }
            if spec.pod.fs_group.value == Some(0) {
                root = true;
                e.fld(None, &spec.pod.fs_group, Val::Str("group root"));
            }
            if !root {
                e.fld(
                    Some(c),
                    group,
                    group.value.map_or(Val::Str("unset"), Val::Int),
                );
            }
        }
        if root {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "runs with group 0 (root) as primary or supplementary group",
                start,
            );
        } else {
            e.outcome(check, Some(c), Outcome::Pass, "no root group", start);
        }
    });
}

fn low_uid_gid(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::UserLowUidGid;
    if !e.ctx.settings().opt_in_low_uid_gid {
        e.not_applicable(
            check,
            "opt-in check, not enabled (use --profile restricted)",
        );
        return;
    }
    if !e.linux_only(check) {
        return;
    }
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let low = |id: Option<i64>| id.is_none_or(|id| id < 10_000);
        let (user_low, group_low) = match spec.docker.as_deref() {
            Some(d) => {
                let id = |part: Option<&UserPart>| match part {
                    Some(UserPart::Id(id)) => Some(*id),
                    _ => None,
                };
                e.fld(Some(c), &d.user, user_label(&d.user.value.user));
                (
                    low(id(Some(&d.user.value.user))),
                    low(id(d.user.value.group.as_ref())),
                )
            }
            None => {
                let user = spec.eff(c, |sc| &sc.run_as_user);
                let group = spec.eff(c, |sc| &sc.run_as_group);
                e.fld(
                    Some(c),
                    user,
                    user.value.map_or(Val::Str("unset"), Val::Int),
                );
                e.fld(
                    Some(c),
                    group,
                    group.value.map_or(Val::Str("unset"), Val::Int),
                );
                (low(user.value), low(group.value))
            }
        };
        if user_low || group_low {
            e.result(
                check,
                Some(c),
                Outcome::Fail,
                Severity::Low,
                "UID or GID below 10000 (or unset)",
                start,
            );
        } else {
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "UID and GID are 10000 or above",
                start,
            );
        }
    });
}
