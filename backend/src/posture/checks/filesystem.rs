//! 1.G Filesystem: `fs.rootfs_writable`. Writable volumes and tmpfs on a read-only root are
//! expected, not a failure (E8).

use super::Eval;
use crate::posture::catalog::CheckId;
use crate::posture::spec::Val;
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::FsRootfsWritable;
    if !e.linux_only(check) {
        return;
    }
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        if c.read_only_rootfs.is_true() {
            e.fld(Some(c), &c.read_only_rootfs, Val::Str("read-only"));
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "read-only root filesystem",
                start,
            );
        } else {
            e.fld(Some(c), &c.read_only_rootfs, Val::Str("writable"));
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "the root filesystem is writable",
                start,
            );
        }
    });
}
