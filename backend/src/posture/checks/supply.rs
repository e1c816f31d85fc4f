//! Build, store and update controls: they read the image digest's build report, registry
//! records and age (`crate::supply::controls`), not the workload spec, so evaluated on a spec
//! alone they say UNKNOWN.

use super::Eval;
use crate::posture::catalog::CheckId;
use crate::posture::Outcome;

const CHECKS: [CheckId; 6] = [
    CheckId::BuildNotReported,
    CheckId::BuildScanMissing,
    CheckId::BuildCriticalVulnerability,
    CheckId::StoreNotReported,
    CheckId::UpdateImageStale,
    CheckId::UpdateNewerDigest,
];

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    for check in CHECKS {
        e.each_container(check, |e, c| {
            let start = e.out.mark();
            e.outcome(
                check,
                Some(c),
                Outcome::Unknown,
                "judged per image digest from CI build reports and registry notifications",
                start,
            );
        });
    }
}
