//! The transaction crash-cycle workload: the kernel's seeded transactions on a `pmrt`
//! pool (`pm_qemu_proto::tx`, `pm_qemu_pool::tx`), judged by the commits it reported,
//! by its own verifier boot (which checked the state against the seed's model), and by
//! the runner's own verification of the pool in the image file.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use arch::{FileMedia, FileOptions};
use pm_qemu_pool::tx::{self, TxHistory, TxVerdict};
use pm_qemu_proto::tx::{TxLine, POOL_LEN};
use pm_qemu_proto::{BootArgs, Mode, Suite};

use crate::cycle::{kill_window_for, CycleFailure, CycleRun, HostPoolError, Workload};

/// Transactions the writer runs unless told otherwise: about 200 ms of guest time on
/// TCG, so a cycle (two boots and the runner's check) takes well under a second.
pub const DEFAULT_TXS: u32 = 400;

/// Creates a `pmrt` pool over NVDIMM 0 (`POOL_LEN` bytes, the whole image) and runs
/// `txs` seeded transactions on its slots and map, reporting each as it returns; the
/// verifier checks what recovery left against the model and reports it.
#[derive(Debug, Clone, Copy)]
pub struct TxWorkload {
    /// Transactions the writer runs if not crashed first.
    pub txs: u32,
}

impl Default for TxWorkload {
    fn default() -> Self {
        TxWorkload { txs: DEFAULT_TXS }
    }
}

/// Fences of the pool's creation and the root's transaction (the writer's `tx ready`
/// line reports the exact count; this only sizes the range crashes are drawn from).
const SETUP_FENCES: u64 = 12;
/// Fences per transaction, rounded up from what the writer reports (about 2.1: one
/// per redo commit, two with a critical section, four or five for the undo-logged
/// object, plus coalescing rounds).
const FENCES_PER_TX: u64 = 2;

/// What one cycle showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxReport {
    /// The oracle's verdict.
    pub verdict: TxVerdict,
    /// What the kernel's recovery did, if there was a pool: groups replayed and
    /// transactions rolled back.
    pub recovery: Option<(u64, u64)>,
}

impl fmt::Display for TxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.recovery {
            Some((replayed, rolled_back)) => write!(
                f,
                "{}; recovery replayed {replayed} groups, rolled back {rolled_back}",
                self.verdict
            ),
            None => write!(f, "{}; no pool", self.verdict),
        }
    }
}

/// The state (counter, digest) of the pool in `image` as the host's own verification
/// finds it (`None`: no pool): the same `tx::verify` the kernel runs (recovery, heap
/// check, the model's state, no leak, a working pool, close).
pub fn host_state(image: &Path, seed: u64, txs: u32) -> Result<Option<(u64, u64)>, CycleFailure> {
    let media = FileMedia::open(image, FileOptions::default())
        .map_err(|e| CycleFailure::HostPool(HostPoolError::Map(e)))?;
    let mut state = None;
    tx::verify(media, seed, txs, &mut |l| {
        if l.is_state() {
            state = state_of(Some(l));
        }
    })
    .map_err(CycleFailure::HostTx)?;
    Ok(state)
}

impl Workload for TxWorkload {
    type Report = TxReport;

    fn name(&self) -> &'static str {
        "tx"
    }

    fn suites(&self) -> (Suite, Suite) {
        (Suite::Tx, Suite::TxVerify)
    }

    fn args(&self, suite: Suite, seed: u64, mode: Mode) -> BootArgs {
        BootArgs {
            suite,
            seed,
            mode,
            ops: self.txs,
            ..BootArgs::default()
        }
    }

    fn fences(&self) -> u64 {
        SETUP_FENCES + u64::from(self.txs) * FENCES_PER_TX
    }

    /// The pool covers the whole NVDIMM, so the kernel and the runner see the same
    /// bytes.
    fn image_size(&self) -> u64 {
        POOL_LEN
    }

    /// 1000 transactions end about 500 ms after the kernel's first output on an idle
    /// machine (TCG); kills are spread over 1 ms to a little past the end, scaled with
    /// the count.
    fn kill_window(&self) -> (Duration, Duration) {
        kill_window_for(self.txs, 550)
    }

    /// * the writer's lines replay (`TxHistory`): transactions in order, each committed
    ///   or aborted as planned, the counter one up per commit;
    /// * a writer stopped at fence `f` reported nothing at or after it;
    /// * the verifier boot passed: recovery, heap check, no leak, the state equal to
    ///   the model after its counter's commits, a working pool;
    /// * the runner's own verification of the image finds the same state;
    /// * the oracle accepts that state: every reported commit visible (durability),
    ///   the transaction in flight entirely or not at all (atomicity), nothing else.
    fn check(&self, run: &CycleRun<'_>) -> Result<TxReport, CycleFailure> {
        let history = TxHistory::from_serial(run.seed, self.txs, &run.writer.serial)
            .map_err(CycleFailure::Tx)?;
        if let Some(fence) = run.fence_crash() {
            history.check_crash_fence(fence).map_err(CycleFailure::Tx)?;
        }
        let lines = run.verifier_lines(TxLine::parse)?;
        let recovery = lines.iter().find_map(|l| match *l {
            TxLine::Opened {
                replayed,
                rolled_back,
                ..
            } => Some((replayed, rolled_back)),
            _ => None,
        });
        let kernel = state_of(lines.iter().copied().find(TxLine::is_state));
        if kernel.is_none() && !lines.contains(&TxLine::NoPool) {
            return Err(CycleFailure::MissingLine { what: "tx state" });
        }
        let host = host_state(&run.images.paths()[0], run.seed, self.txs)?;
        if kernel != host {
            let digest = |s: Option<(u64, u64)>| s.map_or(u64::MAX, |s| s.1);
            return Err(CycleFailure::HostView {
                what: "tx state digest",
                index: 0,
                kernel: digest(kernel),
                host: digest(host),
            });
        }
        let verdict = history.check(kernel).map_err(CycleFailure::Tx)?;
        Ok(TxReport { verdict, recovery })
    }
}

/// `(counter, digest)` of a `tx state` line.
fn state_of(line: Option<TxLine>) -> Option<(u64, u64)> {
    match line {
        Some(TxLine::State { count, digest, .. }) => Some((count, digest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The check against hand-made boots and images: a pool made on the host with the
    //! workload's own writer and verifier stands in for the kernel's, and each way the
    //! reports, the kernel's state or the image could disagree must be reported.

    use std::time::Duration;

    use pm_qemu_pool::tx::TxHistoryError;

    use super::*;
    use crate::cycle::Crash;
    use crate::test_support::{host_boots, judge};
    use crate::Images;

    const SEED: u64 = 0x7a;
    const TXS: u32 = 60;

    /// An image whose pool went through the writer (`txs` transactions, unclosed) and
    /// the verifier, as on the kernel, with both boots' serial text.
    fn images_after(txs: u32) -> (Images, String, String) {
        host_boots(
            POOL_LEN,
            "tx_recovered",
            |media, out| drop(tx::write(media, SEED, txs, &|| 0, out).unwrap()),
            |media, out| drop(tx::verify(media, SEED, TXS, out).unwrap()),
        )
    }

    fn check(
        images: &Images,
        writer: String,
        verifier: String,
        crash: Crash,
    ) -> Result<TxReport, CycleFailure> {
        judge(
            &TxWorkload { txs: TXS },
            SEED,
            crash,
            images,
            writer,
            verifier,
        )
    }

    const KILL: Crash = Crash::Kill(Duration::ZERO);

    #[test]
    fn a_consistent_cycle_passes_and_counts_the_transaction_in_flight() {
        let (images, writer, verifier) = images_after(TXS);
        let r = check(&images, writer.clone(), verifier.clone(), KILL).unwrap();
        assert!(r.verdict.in_flight.is_none() && r.recovery.is_some(), "{r}");
        // The same pool, with the last report lost to the kill: in flight, applied or
        // (an abort) not applied.
        let cut = writer[..=writer.trim_end().rfind('\n').unwrap()].to_string();
        let r = check(&images, cut, verifier, KILL).unwrap();
        assert_eq!(r.verdict.in_flight.map(|i| i.tx), Some(u64::from(TXS) - 1));
    }

    #[test]
    fn lost_commits_and_kernel_states_the_image_cannot_back_are_reported() {
        // The image holds 40 transactions, the writer reported 60: lost commits.
        let (images, _, verifier) = images_after(40);
        let (_, writer, _) = images_after(TXS);
        let r = check(&images, writer.clone(), verifier.clone(), KILL);
        assert!(
            matches!(r, Err(CycleFailure::Tx(TxHistoryError::Lost { .. }))),
            "{r:?}"
        );
        // The kernel claims another digest than the image holds.
        let (images, writer, verifier) = images_after(TXS);
        let forged: String = verifier
            .lines()
            .map(|l| match TxLine::parse(l) {
                Some(TxLine::State {
                    count,
                    slots,
                    keys,
                    digest,
                }) => format!(
                    "{}\n",
                    TxLine::State {
                        count,
                        slots,
                        keys,
                        digest: digest ^ 1
                    }
                ),
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(matches!(
            check(&images, writer.clone(), forged, KILL),
            Err(CycleFailure::HostView {
                what: "tx state digest",
                ..
            })
        ));
        // The kernel claims no pool; a verifier without its state line; one that failed.
        assert!(matches!(
            check(
                &images,
                writer.clone(),
                "tx no-pool\n1 passed, 0 failed\n".into(),
                KILL
            ),
            Err(CycleFailure::HostView { .. })
        ));
        assert!(matches!(
            check(&images, writer.clone(), "1 passed, 0 failed\n".into(), KILL),
            Err(CycleFailure::MissingLine { .. })
        ));
        assert!(matches!(
            check(&images, writer.clone(), "0 passed, 1 failed\n".into(), KILL),
            Err(CycleFailure::VerifierFailed { .. })
        ));
        // A writer stopped at fence 5 cannot have reported reaching it.
        let at_five = writer.replace("fences=0", "fences=5");
        assert!(check(
            &images,
            at_five.clone(),
            verifier.clone(),
            Crash::AtFence(6)
        )
        .is_ok());
        assert!(matches!(
            check(&images, at_five, verifier, Crash::AtFence(5)),
            Err(CycleFailure::Tx(TxHistoryError::CrashFence { .. }))
        ));
    }

    #[test]
    fn an_empty_image_is_no_pool_on_both_sides() {
        let images = Images::create(1, POOL_LEN).unwrap();
        let r = check(
            &images,
            String::new(),
            "tx no-pool\n1 passed, 0 failed\n".into(),
            KILL,
        )
        .unwrap();
        assert!(!r.verdict.ready && r.recovery.is_none());
        assert_eq!(host_state(&images.paths()[0], SEED, TXS).unwrap(), None);
    }
}
