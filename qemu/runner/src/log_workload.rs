//! The first crash-cycle workload: the kernel's append-only log
//! (`pm_qemu_proto::log`), checked for durability and against torn records.

use std::fmt;

use pm_qemu_proto::log::{LogScan, RECORD_SIZE};
use pm_qemu_proto::report::Line;
use pm_qemu_proto::{BootArgs, Mode, Suite};

use crate::cycle::{Crash, CycleFailure, CycleRun, Workload};
use crate::Exit;

/// Appends `records` checksummed records (one fence each) to NVDIMM 0, reporting each
/// commit; the verifier reports the intact prefix.
#[derive(Debug, Clone, Copy)]
pub struct LogWorkload {
    /// Records the writer appends if not crashed first.
    pub records: u32,
    /// Fault injection: the record the writer leaves unflushed (`skip_flush=`), to show
    /// that ADR mode catches a missing flush; `None` for real runs.
    pub skip_flush: Option<u64>,
}

impl LogWorkload {
    /// `records` records, no fault injected.
    pub fn new(records: u32) -> Self {
        LogWorkload {
            records,
            skip_flush: None,
        }
    }
}

/// What one cycle found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogReport {
    /// Records the writer reported committed.
    pub committed: u64,
    /// Records that survived (the kernel's and the runner's scans agree).
    pub valid: u64,
}

impl fmt::Display for LogReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} committed, {} survived", self.committed, self.valid)
    }
}

impl Workload for LogWorkload {
    type Report = LogReport;

    fn name(&self) -> &'static str {
        "log"
    }

    fn suites(&self) -> (Suite, Suite) {
        (Suite::Log, Suite::LogVerify)
    }

    fn args(&self, suite: Suite, seed: u64, mode: Mode) -> BootArgs {
        BootArgs {
            suite,
            seed,
            mode,
            records: self.records,
            skip_flush: self.skip_flush.filter(|_| suite == Suite::Log),
            ..BootArgs::default()
        }
    }

    fn fences(&self) -> u64 {
        u64::from(self.records)
    }

    /// * durability, on the runner's own scan of image 0: every record reported
    ///   committed survived, and at most one more (persisted, then killed before it
    ///   could report); accepted records are exact, nothing valid after the end;
    /// * the verifier boot passed (the same invariants, checked in the kernel) and
    ///   reported `log valid <n>` with the same `n` as the runner's scan;
    /// * a crash at fence `f` leaves exactly `f - 1` commits (one fence per record).
    fn check(&self, run: &CycleRun<'_>) -> Result<LogReport, CycleFailure> {
        let committed = run
            .writer
            .lines()
            .filter_map(|l| match l {
                Line::Committed(i) => Some(i + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let len = self.records as usize * RECORD_SIZE;
        let image = run.images.read(0, 0, len).map_err(CycleFailure::Runner)?;
        let host = LogScan::run(u64::from(self.records), run.seed, |i, buf| {
            let at = i as usize * RECORD_SIZE;
            buf.copy_from_slice(&image[at..at + RECORD_SIZE]);
        });
        host.check_against(committed).map_err(CycleFailure::Log)?;
        if !run.verifier.passed() {
            return Err(CycleFailure::VerifierFailed {
                exit: run.verifier.exit,
            });
        }
        let kernel_valid = run
            .verifier
            .lines()
            .find_map(|l| match l {
                Line::LogValid(n) => Some(n),
                _ => None,
            })
            .ok_or(CycleFailure::MissingLine { what: "log valid" })?;
        if host.valid != kernel_valid {
            return Err(CycleFailure::HostScan {
                kernel: kernel_valid,
                host: host.valid,
            });
        }
        if let (Crash::AtFence(fence), Exit::Guest(_)) = (run.crash, run.writer.exit) {
            if fence <= self.fences() && committed != fence - 1 {
                return Err(CycleFailure::FenceCommits {
                    fence,
                    expected: fence - 1,
                    found: committed,
                });
            }
        }
        Ok(LogReport {
            committed,
            valid: host.valid,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The check against hand-made boots and images: each way a crash could break the
    //! log must be reported.

    use std::fs::OpenOptions;
    use std::io::{Seek, SeekFrom, Write};
    use std::time::Duration;

    use pm_qemu_proto::log::record;
    use pm_qemu_proto::GuestExit;

    use super::*;
    use crate::test_support::outcome;
    use crate::Images;

    const SEED: u64 = 99;

    /// Images whose log holds records `0..n`, plus `extra` raw bytes after them.
    fn images_with(n: u64, extra: &[u8]) -> Images {
        let images = Images::create(1, 1 << 20).unwrap();
        let mut f = OpenOptions::new()
            .write(true)
            .open(&images.paths()[0])
            .unwrap();
        for i in 0..n {
            f.write_all(&record(SEED, i)).unwrap();
        }
        f.write_all(extra).unwrap();
        images
    }

    /// Runs the check on boots with these serial logs.
    fn check_logs(
        writer: String,
        verifier: String,
        crash: Crash,
        images: &Images,
    ) -> Result<LogReport, CycleFailure> {
        let writer = outcome(Exit::Guest(GuestExit::Crash), writer);
        let verifier = outcome(Exit::Guest(GuestExit::Pass), verifier);
        LogWorkload::new(64).check(&CycleRun {
            seed: SEED,
            mode: Mode::Direct,
            crash,
            writer: &writer,
            verifier: &verifier,
            images,
        })
    }

    /// A writer that reported `committed` commits and a verifier that found
    /// `kernel_valid` records.
    fn check(
        committed: u64,
        crash: Crash,
        images: &Images,
        kernel_valid: u64,
    ) -> Result<LogReport, CycleFailure> {
        let writer: String = (0..committed)
            .map(|i| pm_qemu_proto::report::Committed(i).to_string() + "\n")
            .collect();
        let verifier =
            format!("log valid {kernel_valid}\ntest log_intact ... ok\n1 passed, 0 failed\n");
        check_logs(writer, verifier, crash, images)
    }

    #[test]
    fn intact_log_with_one_record_in_flight_passes() {
        let images = images_with(6, &[]);
        let r = check(5, Crash::Kill(Duration::ZERO), &images, 6).unwrap();
        assert_eq!((r.committed, r.valid), (5, 6));
        assert!(check(6, Crash::AtFence(7), &images, 6).is_ok());
    }

    #[test]
    fn a_lost_committed_record_is_reported() {
        let images = images_with(4, &[]);
        assert!(matches!(
            check(5, Crash::Kill(Duration::ZERO), &images, 4),
            Err(CycleFailure::Log(pm_qemu_proto::log::LogError::Lost {
                committed: 5,
                valid: 4
            }))
        ));
    }

    #[test]
    fn a_torn_record_ends_the_log_and_a_stray_one_is_reported() {
        // Record 3 half written: the log ends at 3.
        let torn = &record(SEED, 3)[..32];
        let images = images_with(3, torn);
        assert!(check(3, Crash::Kill(Duration::ZERO), &images, 3).is_ok());
        // A valid record 5 after a blank 4: the writer never skips a slot.
        let images = images_with(4, &[0u8; 64]);
        let mut f = OpenOptions::new()
            .write(true)
            .open(&images.paths()[0])
            .unwrap();
        f.seek(SeekFrom::Start(5 * 64)).unwrap();
        f.write_all(&record(SEED, 5)).unwrap();
        assert!(matches!(
            check(4, Crash::Kill(Duration::ZERO), &images, 4),
            Err(CycleFailure::Log(pm_qemu_proto::log::LogError::Stray {
                index: 5
            }))
        ));
    }

    #[test]
    fn disagreement_with_the_kernel_and_wrong_fence_commits_are_reported() {
        let images = images_with(6, &[]);
        assert!(matches!(
            check(6, Crash::Kill(Duration::ZERO), &images, 5),
            Err(CycleFailure::HostScan { kernel: 5, host: 6 })
        ));
        assert!(matches!(
            check(6, Crash::AtFence(4), &images, 6),
            Err(CycleFailure::FenceCommits {
                fence: 4,
                expected: 3,
                found: 6
            })
        ));
        // A verifier that did not report is a failure, not a pass.
        let r = check_logs(
            "committed 5\n".into(),
            "1 passed, 0 failed\n".into(),
            Crash::Kill(Duration::ZERO),
            &images,
        );
        assert!(matches!(
            r,
            Err(CycleFailure::MissingLine { what: "log valid" })
        ));
    }
}
