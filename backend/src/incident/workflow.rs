//! The incident state machine: which step may follow which, and the guards. Pure: no I/O.
//!
//! `open → isolated → analysing → fixed → restored → closed`. Restoring before a fix is recorded
//! needs an admin override with a reason; closing an incident whose workloads are still isolated
//! is refused (restore first).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Isolated,
    Analysing,
    Fixed,
    Restored,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Isolated => "isolated",
            Self::Analysing => "analysing",
            Self::Fixed => "fixed",
            Self::Restored => "restored",
            Self::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => Self::Open,
            "isolated" => Self::Isolated,
            "analysing" => Self::Analysing,
            "fixed" => Self::Fixed,
            "restored" => Self::Restored,
            "closed" => Self::Closed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Isolate,
    Analysis,
    Fix,
    Restore,
    Close,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Isolate => "isolate",
            Self::Analysis => "analysis",
            Self::Fix => "fix",
            Self::Restore => "restore",
            Self::Close => "close",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "isolate" => Self::Isolate,
            "analysis" => Self::Analysis,
            "fix" => Self::Fix,
            "restore" => Self::Restore,
            "close" => Self::Close,
            _ => return None,
        })
    }

    /// Whether the step acts on the engines (queued and executed by the worker).
    pub fn is_engine_action(self) -> bool {
        matches!(self, Self::Isolate | Self::Restore)
    }
}

/// An admin's override of a guard, with the reason recorded in the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub by_admin: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("an incident that is {state} cannot {step}")]
    NotAllowed {
        state: &'static str,
        step: &'static str,
    },
    #[error("restoring before a fix is recorded needs an admin override with a reason")]
    OverrideRequired,
    #[error("an override needs a reason")]
    OverrideReasonMissing,
    #[error("only an admin may override the guard")]
    OverrideNotAdmin,
}

/// The state after `step`, or why the step is not allowed now.
pub fn next(state: State, step: Step, over: Option<&Override>) -> Result<State, GuardError> {
    use State::*;
    let not_allowed = || GuardError::NotAllowed {
        state: state.as_str(),
        step: step.as_str(),
    };
    match (step, state) {
        (Step::Isolate, Open) => Ok(Isolated),
        (Step::Analysis, Isolated | Analysing) => Ok(Analysing),
        (Step::Fix, Isolated | Analysing | Fixed) => Ok(Fixed),
        (Step::Restore, Fixed) => Ok(Restored),
        (Step::Restore, Isolated | Analysing) => match over {
            None => Err(GuardError::OverrideRequired),
            Some(o) if o.reason.trim().is_empty() => Err(GuardError::OverrideReasonMissing),
            Some(o) if !o.by_admin => Err(GuardError::OverrideNotAdmin),
            Some(_) => Ok(Restored),
        },
        // Never isolated: nothing to undo. Restored: everything is back.
        (Step::Close, Open | Restored) => Ok(Closed),
        _ => Err(not_allowed()),
    }
}

/// The steps a console may offer in `state` (the override path is offered separately).
pub fn available(state: State) -> Vec<Step> {
    [
        Step::Isolate,
        Step::Analysis,
        Step::Fix,
        Step::Restore,
        Step::Close,
    ]
    .into_iter()
    .filter(|step| next(state, *step, None).is_ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(reason: &str) -> Override {
        Override {
            by_admin: true,
            reason: reason.into(),
        }
    }

    #[test]
    fn the_happy_path_runs_from_open_to_closed() {
        let mut state = State::Open;
        for step in [
            Step::Isolate,
            Step::Analysis,
            Step::Fix,
            Step::Restore,
            Step::Close,
        ] {
            state = next(state, step, None).unwrap();
        }
        assert_eq!(state, State::Closed);
    }

    #[test]
    fn restoring_before_a_fix_needs_an_admin_override_with_a_reason() {
        assert_eq!(
            next(State::Isolated, Step::Restore, None),
            Err(GuardError::OverrideRequired)
        );
        assert_eq!(
            next(State::Analysing, Step::Restore, Some(&admin("  "))),
            Err(GuardError::OverrideReasonMissing)
        );
        let responder = Override {
            by_admin: false,
            reason: "false positive".into(),
        };
        assert_eq!(
            next(State::Isolated, Step::Restore, Some(&responder)),
            Err(GuardError::OverrideNotAdmin)
        );
        assert_eq!(
            next(
                State::Isolated,
                Step::Restore,
                Some(&admin("false positive"))
            ),
            Ok(State::Restored)
        );
    }

    #[test]
    fn an_isolated_incident_cannot_be_closed_and_a_closed_one_accepts_nothing() {
        assert!(next(State::Isolated, Step::Close, None).is_err());
        assert!(next(State::Fixed, Step::Close, None).is_err());
        assert_eq!(available(State::Closed), Vec::<Step>::new());
    }

    #[test]
    fn isolation_happens_once_and_only_from_open() {
        assert!(next(State::Isolated, Step::Isolate, None).is_err());
        assert!(next(State::Restored, Step::Isolate, None).is_err());
        assert_eq!(available(State::Open), vec![Step::Isolate, Step::Close]);
    }

    #[test]
    fn states_and_steps_round_trip_through_their_names() {
        for state in [
            State::Open,
            State::Isolated,
            State::Analysing,
            State::Fixed,
            State::Restored,
            State::Closed,
        ] {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(Step::parse("restore"), Some(Step::Restore));
        assert_eq!(Step::parse("reboot"), None);
    }
}
