//! The per-workload grade, A to F, from the worst open severity and the counts of open
//! findings (FAILs that are not waived). `info` findings never count.
//!
//! | grade | when |
//! |---|---|
//! | F | at least one critical |
//! | D | no critical; 3 or more high |
//! | C | no critical; 1–2 high, or 5 or more medium |
//! | B | no critical or high; 1–4 medium, or 6 or more low |
//! | A | no critical, high or medium; at most 5 low |
//!
//! The README's "Posture checks and grades" section states the same table.

use serde::Serialize;

use super::catalog::Severity;

/// Open findings counted by severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

impl SeverityCounts {
    pub fn from_severities(severities: impl IntoIterator<Item = Severity>) -> Self {
        let mut counts = Self::default();
        for severity in severities {
            counts.add(severity);
        }
        counts
    }

    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Info => self.info += 1,
        }
    }

    /// The worst severity counted, ignoring `info`.
    pub fn worst(&self) -> Option<Severity> {
        if self.critical > 0 {
            Some(Severity::Critical)
        } else if self.high > 0 {
            Some(Severity::High)
        } else if self.medium > 0 {
            Some(Severity::Medium)
        } else if self.low > 0 {
            Some(Severity::Low)
        } else {
            None
        }
    }

    /// How many findings are at or above `severity`.
    pub fn at_or_above(&self, severity: Severity) -> u32 {
        [
            (Severity::Critical, self.critical),
            (Severity::High, self.high),
            (Severity::Medium, self.medium),
            (Severity::Low, self.low),
            (Severity::Info, self.info),
        ]
        .into_iter()
        .filter(|(s, _)| *s >= severity)
        .map(|(_, n)| n)
        .sum()
    }
}

/// A letter grade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Grade {
    A,
    B,
    C,
    D,
    F,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        }
    }
}

/// The grade of a workload from its open findings.
pub fn grade(counts: &SeverityCounts) -> Grade {
    if counts.critical > 0 {
        Grade::F
    } else if counts.high >= 3 {
        Grade::D
    } else if counts.high > 0 || counts.medium >= 5 {
        Grade::C
    } else if counts.medium > 0 || counts.low > 5 {
        Grade::B
    } else {
        Grade::A
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(critical: u32, high: u32, medium: u32, low: u32) -> SeverityCounts {
        SeverityCounts {
            critical,
            high,
            medium,
            low,
            info: 7,
        }
    }

    #[test]
    fn grades_follow_the_worst_severity_then_the_counts() {
        assert_eq!(grade(&counts(0, 0, 0, 0)), Grade::A);
        assert_eq!(grade(&counts(0, 0, 0, 5)), Grade::A);
        assert_eq!(grade(&counts(0, 0, 0, 6)), Grade::B);
        assert_eq!(grade(&counts(0, 0, 1, 0)), Grade::B);
        assert_eq!(grade(&counts(0, 0, 4, 9)), Grade::B);
        assert_eq!(grade(&counts(0, 0, 5, 0)), Grade::C);
        assert_eq!(grade(&counts(0, 1, 0, 0)), Grade::C);
        assert_eq!(grade(&counts(0, 2, 9, 9)), Grade::C);
        assert_eq!(grade(&counts(0, 3, 0, 0)), Grade::D);
        assert_eq!(grade(&counts(1, 0, 0, 0)), Grade::F);
    }

    #[test]
    fn info_findings_never_lower_a_grade() {
        let only_info = SeverityCounts {
            info: 40,
            ..SeverityCounts::default()
        };
        assert_eq!(grade(&only_info), Grade::A);
        assert_eq!(only_info.worst(), None);
        assert_eq!(only_info.at_or_above(Severity::Low), 0);
        assert_eq!(only_info.at_or_above(Severity::Info), 40);
    }
}
