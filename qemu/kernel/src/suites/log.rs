//! The crash-cycle workload (see `pm_qemu_proto::log`): boot 1 (`suite=log`) appends
//! records to NVDIMM 0 and reports each commit; it is killed, or crashes itself at a
//! fence (`crash_at=`). Boot 2 (`suite=log-verify`) scans what survived and prints
//! `log valid <n>`; the runner checks that against the commits reported.
//!
//! `mode=direct` runs on the NVDIMM; `mode=adr` on an [`AdrMedia`] working copy, so a
//! kill loses whatever was not flushed.

use arch::Media;
use pm_qemu_proto::log::{record, LogScan, RECORD_SIZE};
use pm_qemu_proto::report::{Committed, LogValid};
use pm_qemu_proto::Mode;

use crate::adr::AdrMedia;
use crate::crash::CrashAt;
use crate::testing::{Env, Test, TestFailure};

/// Boot 1.
pub fn append_tests() -> &'static [Test] {
    &[Test {
        name: "log_append",
        run: append,
    }]
}

/// Boot 2.
pub fn verify_tests() -> &'static [Test] {
    &[Test {
        name: "log_intact",
        run: verify,
    }]
}

/// Runs `f` on the log region of NVDIMM 0, as the mode says, behind the crash hook.
fn with_log_media(
    env: &Env,
    f: &mut dyn FnMut(&dyn Media) -> Result<(), TestFailure>,
) -> Result<(), TestFailure> {
    let nv = &env.nvdimms()?[0];
    let records = env.args.records;
    let len = u64::from(records) * RECORD_SIZE as u64;
    if len > nv.len {
        return Err(TestFailure::LogTooLong {
            records,
            capacity: nv.len,
        });
    }
    let window = nv.window(0, len)?;
    match env.args.mode {
        Mode::Direct => f(&CrashAt::new(window, env.args.crash_at)),
        Mode::Adr => f(&CrashAt::new(AdrMedia::new(window)?, env.args.crash_at)),
    }
}

/// Appends `records` records, one fence each: even ones with ordinary stores plus a
/// flush, odd ones with non-temporal stores, so both paths are crash-tested. Record
/// `skip_flush=<n>` (fault injection) is stored with ordinary stores and not flushed.
fn append(env: &Env) -> Result<(), TestFailure> {
    let seed = env.args.seed;
    with_log_media(env, &mut |m| {
        for i in 0..u64::from(env.args.records) {
            let off = i as usize * RECORD_SIZE;
            let r = record(seed, i);
            if env.args.skip_flush == Some(i) {
                m.write(off, &r);
            } else if i % 2 == 0 {
                m.write(off, &r);
                m.flush(off, RECORD_SIZE);
            } else {
                m.write_nt(off, &r);
            }
            m.fence();
            println!("{}", Committed(i));
        }
        Ok(())
    })
}

/// Scans the log and reports the intact prefix; fails on an accepted record that
/// differs from what was written or a valid record past the end.
fn verify(env: &Env) -> Result<(), TestFailure> {
    let seed = env.args.seed;
    with_log_media(env, &mut |m| {
        let capacity = (m.len() / RECORD_SIZE) as u64;
        let scan = LogScan::run(capacity, seed, |i, buf| {
            m.read(i as usize * RECORD_SIZE, buf);
        });
        println!("{}", LogValid(scan.valid));
        scan.check().map_err(TestFailure::from)
    })
}
