//! The lifecycle stage machine: build → store → deploy → run → update → retire.
//!
//! Pure: given what is stored about a workload and what a collector observes now, [`next`] says
//! which transitions to append. Both collectors feed it the same [`Observation`], so Docker and
//! Kubernetes workloads move through the stages by one set of rules:
//! - a workload seen for the first time enters `run` when an instance runs, else `deploy`;
//! - a change of image digests or spec is an `update`, kept until the new version is rolled out
//!   and running, then `run` (a rollout finished with nothing running is `deploy`);
//! - `run` ↔ `deploy` follow whether any instance runs;
//! - a workload that is gone is `retire`; seen again, it starts over (re-created).

pub mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A lifecycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Build,
    Store,
    Deploy,
    Run,
    Update,
    Retire,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Build,
        Stage::Store,
        Stage::Deploy,
        Stage::Run,
        Stage::Update,
        Stage::Retire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Store => "store",
            Stage::Deploy => "deploy",
            Stage::Run => "run",
            Stage::Update => "update",
            Stage::Retire => "retire",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage name that is not one of the six.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a lifecycle stage (build, store, deploy, run, update, retire)")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| UnknownStage(text.to_string()))
    }
}

/// What is stored about a workload's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub stage: Stage,
    pub digests: Vec<String>,
    pub spec_hash: Option<String>,
}

/// What a collector sees of a workload now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// The workload still exists (a container or controller is there).
    pub present: bool,
    /// Instances running (Kubernetes: running and ready).
    pub running: u32,
    /// The image digests of the declared / newest version, sorted; empty when unknown.
    pub digests: Vec<String>,
    /// A hash of the declared spec; `None` when unknown.
    pub spec_hash: Option<String>,
    /// Every instance runs the current version (Kubernetes: the rollout is complete).
    pub rolled_out: bool,
    /// Why, in words, for the history ("container web-1 started", "rollout of rs abc").
    pub reason: Option<String>,
}

/// One transition to append to the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<Stage>,
    pub to: Stage,
    pub cause: String,
    pub digests_before: Vec<String>,
    pub digests_after: Vec<String>,
}

fn with_reason(cause: &str, observation: &Observation) -> String {
    match &observation.reason {
        Some(reason) => format!("{cause}: {reason}"),
        None => cause.to_string(),
    }
}

/// The transitions from `current` given `observation`, in order (at most two: an update that is
/// already running).
pub fn next(current: Option<&Current>, observation: &Observation) -> Vec<Transition> {
    let mut out = Vec::new();
    let digests = observation.digests.clone();
    let Some(current) = current else {
        if observation.present {
            let (to, cause) = if observation.running > 0 {
                (Stage::Run, "first seen running")
            } else {
                (Stage::Deploy, "first seen, not running")
            };
            out.push(Transition {
                from: None,
                to,
                cause: with_reason(cause, observation),
                digests_before: Vec::new(),
                digests_after: digests,
            });
        }
        return out;
    };

    let transition = |from: Stage, to: Stage, cause: &str, before: &[String]| Transition {
        from: Some(from),
        to,
        cause: with_reason(cause, observation),
        digests_before: before.to_vec(),
        digests_after: digests.clone(),
    };

    if !observation.present {
        if current.stage != Stage::Retire {
            out.push(transition(
                current.stage,
                Stage::Retire,
                "gone",
                &current.digests,
            ));
        }
        return out;
    }

    if current.stage == Stage::Retire {
        let (to, cause) = if observation.running > 0 {
            (Stage::Run, "re-created and running")
        } else {
            (Stage::Deploy, "re-created, not running")
        };
        out.push(transition(current.stage, to, cause, &current.digests));
        return out;
    }

    let digests_changed = !current.digests.is_empty()
        && !observation.digests.is_empty()
        && current.digests != observation.digests;
    let spec_changed = matches!(
        (&current.spec_hash, &observation.spec_hash),
        (Some(before), Some(after)) if before != after
    );
    let mut stage = current.stage;
    if digests_changed || spec_changed {
        let cause = if digests_changed {
            "image changed"
        } else {
            "spec changed"
        };
        if stage != Stage::Update {
            out.push(transition(stage, Stage::Update, cause, &current.digests));
            stage = Stage::Update;
        }
    }

    let settled = if stage == Stage::Update {
        if !observation.rolled_out {
            None
        } else if observation.running > 0 {
            Some((Stage::Run, "new version running"))
        } else {
            Some((Stage::Deploy, "rolled out, nothing running"))
        }
    } else if observation.running > 0 && stage != Stage::Run {
        Some((Stage::Run, "running"))
    } else if observation.running == 0 && stage == Stage::Run {
        Some((Stage::Deploy, "no instance running"))
    } else if matches!(stage, Stage::Build | Stage::Store) {
        Some((Stage::Deploy, "deployed, not running"))
    } else {
        None
    };
    if let Some((to, cause)) = settled {
        let before = if out.is_empty() {
            current.digests.clone()
        } else {
            digests.clone()
        };
        out.push(transition(stage, to, cause, &before));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(running: u32, digests: &[&str], rolled_out: bool) -> Observation {
        Observation {
            present: true,
            running,
            digests: digests.iter().map(|d| d.to_string()).collect(),
            spec_hash: None,
            rolled_out,
            reason: None,
        }
    }

    fn current(stage: Stage, digests: &[&str]) -> Current {
        Current {
            stage,
            digests: digests.iter().map(|d| d.to_string()).collect(),
            spec_hash: None,
        }
    }

    fn stages(transitions: &[Transition]) -> Vec<Stage> {
        transitions.iter().map(|t| t.to).collect()
    }

    #[test]
    fn a_new_running_workload_enters_run_and_a_stopped_one_deploy() {
        assert_eq!(
            stages(&next(None, &obs(1, &["sha256:a"], true))),
            vec![Stage::Run]
        );
        assert_eq!(
            stages(&next(None, &obs(0, &["sha256:a"], true))),
            vec![Stage::Deploy]
        );
        assert!(next(None, &Observation::default()).is_empty());
    }

    #[test]
    fn stopping_and_starting_moves_between_run_and_deploy() {
        let running = current(Stage::Run, &["sha256:a"]);
        assert_eq!(
            stages(&next(Some(&running), &obs(0, &["sha256:a"], true))),
            vec![Stage::Deploy]
        );
        let stopped = current(Stage::Deploy, &["sha256:a"]);
        assert_eq!(
            stages(&next(Some(&stopped), &obs(2, &["sha256:a"], true))),
            vec![Stage::Run]
        );
        assert!(next(Some(&running), &obs(3, &["sha256:a"], true)).is_empty());
    }

    #[test]
    fn a_new_image_is_an_update_then_run_with_both_digests_recorded() {
        let running = current(Stage::Run, &["sha256:a"]);
        let transitions = next(Some(&running), &obs(1, &["sha256:b"], true));
        assert_eq!(stages(&transitions), vec![Stage::Update, Stage::Run]);
        assert_eq!(transitions[0].digests_before, vec!["sha256:a"]);
        assert_eq!(transitions[0].digests_after, vec!["sha256:b"]);
        assert_eq!(transitions[0].cause, "image changed");
    }

    #[test]
    fn an_update_holds_until_the_rollout_finishes() {
        let running = current(Stage::Run, &["sha256:a"]);
        let during = next(Some(&running), &obs(3, &["sha256:b"], false));
        assert_eq!(stages(&during), vec![Stage::Update]);
        let updating = current(Stage::Update, &["sha256:b"]);
        assert!(next(Some(&updating), &obs(3, &["sha256:b"], false)).is_empty());
        assert_eq!(
            stages(&next(Some(&updating), &obs(3, &["sha256:b"], true))),
            vec![Stage::Run]
        );
        assert_eq!(
            stages(&next(Some(&updating), &obs(0, &["sha256:b"], true))),
            vec![Stage::Deploy]
        );
    }

    #[test]
    fn a_spec_change_without_a_new_image_is_an_update() {
        let mut before = current(Stage::Run, &["sha256:a"]);
        before.spec_hash = Some("1".into());
        let mut now = obs(1, &["sha256:a"], false);
        now.spec_hash = Some("2".into());
        let transitions = next(Some(&before), &now);
        assert_eq!(stages(&transitions), vec![Stage::Update]);
        assert_eq!(transitions[0].cause, "spec changed");
    }

    #[test]
    fn unknown_digests_never_count_as_a_change() {
        let running = current(Stage::Run, &[]);
        assert!(next(Some(&running), &obs(1, &["sha256:b"], true)).is_empty());
    }

    #[test]
    fn gone_is_retire_and_seen_again_starts_over() {
        let running = current(Stage::Run, &["sha256:a"]);
        let gone = Observation::default();
        assert_eq!(stages(&next(Some(&running), &gone)), vec![Stage::Retire]);
        let retired = current(Stage::Retire, &["sha256:a"]);
        assert!(next(Some(&retired), &gone).is_empty());
        let back = next(Some(&retired), &obs(1, &["sha256:a"], true));
        assert_eq!(stages(&back), vec![Stage::Run]);
        assert!(back[0].cause.starts_with("re-created"));
    }

    #[test]
    fn the_reason_is_kept_in_the_cause() {
        let mut now = obs(1, &["sha256:a"], true);
        now.reason = Some("container web-1 started".into());
        assert_eq!(
            next(None, &now)[0].cause,
            "first seen running: container web-1 started"
        );
    }

    #[test]
    fn stages_round_trip_through_text() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>().unwrap(), stage);
        }
        assert!("running".parse::<Stage>().is_err());
    }
}
