//! The heap crash-cycle workload: the kernel's seeded atomic allocations and frees on
//! a pool's root fields (`pm_qemu_proto::heap`, `pm_qemu_pool::workload`), judged by
//! the ops it reported, by its own verifier boot, and by the runner's own open of the
//! pool in the image file.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use arch::{FileMedia, FileOptions};
use pm_qemu_pool::workload::{HeapView, History, Verdict};
use pm_qemu_proto::heap::{HeapLine, LAYOUT, POOL_LEN};
use pm_qemu_proto::{BootArgs, Mode, Suite, DEFAULT_OPS};
use pmalloc::{Heap, OpenError, OpenOptions};

use crate::cycle::{kill_window_for, CycleFailure, CycleRun, HostPoolError, Workload};

/// Creates a pool over NVDIMM 0 (`POOL_LEN` bytes, the whole image) and runs `ops` seeded
/// allocations and frees on its root's fields, reporting each as it returns; the
/// verifier reports what recovery left.
#[derive(Debug, Clone, Copy)]
pub struct HeapWorkload {
    /// Ops the writer runs if not crashed first.
    pub ops: u32,
}

impl Default for HeapWorkload {
    fn default() -> Self {
        HeapWorkload { ops: DEFAULT_OPS }
    }
}

/// Fences of `create` and the root's allocation (the writer's `heap ready` line
/// reports the exact count; this only sizes the range crashes are drawn from).
const SETUP_FENCES: u64 = 6;

/// What one cycle showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapReport {
    /// The oracle's verdict.
    pub verdict: Verdict,
    /// Op records the kernel's recovery replayed (`None`: no pool).
    pub replayed: Option<u32>,
}

impl fmt::Display for HeapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.replayed {
            Some(n) => write!(f, "{}; recovery replayed {n}", self.verdict),
            None => write!(f, "{}; no pool", self.verdict),
        }
    }
}

/// The pool in `image` as the host sees it (`None`: no valid pool header), after its
/// own recovery and a passing `check()`.
pub fn host_view(image: &Path) -> Result<Option<HeapView>, HostPoolError> {
    let media = FileMedia::open(image, FileOptions::default()).map_err(HostPoolError::Map)?;
    let opts = OpenOptions {
        layout: Some(LAYOUT),
    };
    match Heap::open(media, &opts) {
        Ok((heap, _)) => {
            heap.check().map_err(HostPoolError::Check)?;
            Ok(Some(HeapView::of(&heap)))
        }
        Err(OpenError::NoValidHeader { .. }) => Ok(None),
        Err(e) => Err(HostPoolError::Open(e)),
    }
}

/// The first difference between the kernel's and the host's view, as a failure.
fn compare(kernel: Option<&HeapView>, host: Option<&HeapView>) -> Result<(), CycleFailure> {
    let differ = |what, index, kernel: u64, host: u64| {
        (kernel != host).then_some(CycleFailure::HostView {
            what,
            index,
            kernel,
            host,
        })
    };
    let (k, h) = match (kernel, host) {
        (Some(k), Some(h)) => (k, h),
        (None, None) => return Ok(()),
        (k, h) => {
            return Err(CycleFailure::HostView {
                what: "pool present",
                index: 0,
                kernel: k.is_some().into(),
                host: h.is_some().into(),
            })
        }
    };
    let first = differ("root", 0, k.root, h.root)
        .or_else(|| (0..k.fields.len()).find_map(|i| differ("field", i, k.fields[i], h.fields[i])))
        .or_else(|| differ("objects", 0, k.objects.len() as u64, h.objects.len() as u64))
        .or_else(|| {
            k.objects
                .iter()
                .zip(&h.objects)
                .enumerate()
                .find_map(|(i, (a, b))| (a != b).then(|| differ("object", i, a.ptr, b.ptr)))
                .flatten()
        });
    first.map_or(Ok(()), Err)
}

impl Workload for HeapWorkload {
    type Report = HeapReport;

    fn name(&self) -> &'static str {
        "heap"
    }

    fn suites(&self) -> (Suite, Suite) {
        (Suite::Heap, Suite::HeapVerify)
    }

    fn args(&self, suite: Suite, seed: u64, mode: Mode) -> BootArgs {
        BootArgs {
            suite,
            seed,
            mode,
            ops: self.ops,
            ..BootArgs::default()
        }
    }

    fn fences(&self) -> u64 {
        u64::from(self.ops) + SETUP_FENCES
    }

    /// The pool covers the whole NVDIMM, so the kernel (through its window) and the
    /// runner (through the whole file) see the same bytes, down to where open looks
    /// for the backup header.
    fn image_size(&self) -> u64 {
        POOL_LEN
    }

    /// The default 1000 ops end about 140 ms after the kernel's first output on an idle
    /// machine (TCG); kills are spread over 1 ms to a little past that, scaled with the
    /// op count (under load the guest runs slower, so the kills land earlier in it).
    fn kill_window(&self) -> (Duration, Duration) {
        kill_window_for(self.ops, 130)
    }

    /// * the writer's lines replay (`History`): ops in order on their planned fields,
    ///   one fence per free and two per allocation, nothing handed out twice;
    /// * a writer stopped at fence `f` last reported fence `f - 1` (down to `f - 3`
    ///   with an allocation in flight);
    /// * the verifier boot passed: its open, `check()`, self-check (no leak, no double
    ///   allocation, no dangling field) and post-recovery allocations held;
    /// * the pool the runner opens from the image file is the one the kernel reported;
    /// * the oracle accepts that pool: every reported op visible, the op in flight
    ///   entirely or not at all, objects of the size, type and tag their op gave.
    fn check(&self, run: &CycleRun<'_>) -> Result<HeapReport, CycleFailure> {
        let history = History::from_serial(run.seed, self.ops, &run.writer.serial)
            .map_err(CycleFailure::Heap)?;
        if let Some(fence) = run.fence_crash() {
            history
                .check_crash_fence(fence)
                .map_err(CycleFailure::Heap)?;
        }
        let lines = run.verifier_lines(HeapLine::parse)?;
        let replayed = lines.iter().find_map(|l| match l {
            HeapLine::Opened { replayed, .. } => Some(*replayed),
            _ => None,
        });
        let kernel = if lines.contains(&HeapLine::NoPool) {
            None
        } else {
            Some(
                HeapView::from_lines(lines.into_iter())
                    .ok_or(CycleFailure::MissingLine { what: "heap root" })?,
            )
        };
        let host = host_view(&run.images.paths()[0]).map_err(CycleFailure::HostPool)?;
        compare(kernel.as_ref(), host.as_ref())?;
        let verdict = history.check(kernel.as_ref()).map_err(CycleFailure::Heap)?;
        Ok(HeapReport { verdict, replayed })
    }
}

#[cfg(test)]
mod tests {
    //! The check against hand-made boots and images: a pool made on the host with the
    //! workload's own writer stands in for the kernel's, and each way the reports, the
    //! kernel's view or the image could disagree must be reported.

    use std::time::Duration;

    use pm_qemu_pool::workload::{self, HistoryError};

    use super::*;
    use crate::cycle::Crash;
    use crate::test_support::{host_boots, judge, text};
    use crate::Images;

    const SEED: u64 = 0x77;
    const OPS: u32 = 50;

    /// An image whose pool went through the writer (`ops` ops, unclosed) and the
    /// verifier, as on the kernel, with both boots' serial text.
    fn images_after(ops: u32) -> (Images, String, String) {
        host_boots(
            POOL_LEN,
            "heap_recovered",
            |media, out| drop(workload::write(media, SEED, ops, &|| 0, out).unwrap()),
            |media, out| drop(workload::verify(media, out).unwrap()),
        )
    }

    fn check(
        images: &Images,
        writer: String,
        verifier: String,
        ops: u32,
    ) -> Result<HeapReport, CycleFailure> {
        let crash = Crash::Kill(Duration::ZERO);
        judge(&HeapWorkload { ops }, SEED, crash, images, writer, verifier)
    }

    /// Writer lines with the fence counts the heap would report, one per free and two
    /// per allocation (the host run above counted none).
    fn with_fences(writer: &str) -> String {
        let mut fences = 6;
        let mut before = [0u64; pm_qemu_proto::heap::FIELDS];
        let lines: Vec<HeapLine> = writer
            .lines()
            .filter_map(HeapLine::parse)
            .map(|l| match l {
                HeapLine::Ready { root, .. } => HeapLine::Ready { root, fences },
                HeapLine::Op {
                    op, field, value, ..
                } => {
                    // An allocation fences its tag, then its record.
                    fences += match (before[field], value) {
                        (b, v) if b == v => 0,
                        (0, _) => 2,
                        _ => 1,
                    };
                    before[field] = value;
                    HeapLine::Op {
                        op,
                        field,
                        value,
                        fences,
                    }
                }
                other => other,
            })
            .collect();
        text(&lines)
    }

    #[test]
    fn a_consistent_cycle_passes_and_counts_the_op_in_flight() {
        let (images, writer, verifier) = images_after(OPS);
        let writer = with_fences(&writer);
        let r = check(&images, writer.clone(), verifier.clone(), OPS).unwrap();
        assert_eq!(r.verdict.committed, u64::from(OPS));
        // The same pool, with the last report lost to the kill: op in flight, applied.
        let cut = writer[..=writer.trim_end().rfind('\n').unwrap()].to_string();
        let r = check(&images, cut, verifier, OPS).unwrap();
        assert_eq!(r.verdict.in_flight, Some(u64::from(OPS) - 1));
    }

    #[test]
    fn a_kernel_view_that_differs_from_the_image_is_reported() {
        let (images, writer, verifier) = images_after(OPS);
        let writer = with_fences(&writer);
        // The kernel claims field 0 held something else.
        let forged: String = verifier
            .lines()
            .map(|l| match HeapLine::parse(l) {
                Some(HeapLine::Field { index: 0, value }) => {
                    format!(
                        "{}\n",
                        HeapLine::Field {
                            index: 0,
                            value: value ^ 0x40
                        }
                    )
                }
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(matches!(
            check(&images, writer.clone(), forged, OPS),
            Err(CycleFailure::HostView {
                what: "field",
                index: 0,
                ..
            })
        ));
        // The kernel claims no pool.
        assert!(matches!(
            check(
                &images,
                writer.clone(),
                "heap no-pool\n1 passed, 0 failed\n".into(),
                OPS
            ),
            Err(CycleFailure::HostView {
                what: "pool present",
                ..
            })
        ));
        // A verifier without its root line, and one that failed.
        assert!(matches!(
            check(&images, writer.clone(), "1 passed, 0 failed\n".into(), OPS),
            Err(CycleFailure::MissingLine { .. })
        ));
        assert!(matches!(
            check(&images, writer, "0 passed, 1 failed\n".into(), OPS),
            Err(CycleFailure::VerifierFailed { .. })
        ));
    }

    #[test]
    fn reports_the_image_cannot_back_are_reported() {
        // The writer reported more ops than the pool holds: the image has 20, the
        // reports claim 50 (a lost op), or claim ops on other fields.
        let (images, _, verifier) = images_after(20);
        let (_, writer, _) = images_after(OPS);
        let r = check(&images, with_fences(&writer), verifier.clone(), OPS);
        assert!(
            matches!(r, Err(CycleFailure::Heap(HistoryError::Field { .. }))),
            "{r:?}"
        );
        // Unfenced reports (the host run counts no fences) break the one-fence rule.
        let (images, writer, verifier) = images_after(OPS);
        assert!(matches!(
            check(&images, writer, verifier, OPS),
            Err(CycleFailure::Heap(HistoryError::Fences { .. }))
        ));
    }

    #[test]
    fn an_empty_image_is_no_pool_on_both_sides() {
        let images = Images::create(1, POOL_LEN).unwrap();
        let r = check(
            &images,
            String::new(),
            "heap no-pool\n1 passed, 0 failed\n".into(),
            OPS,
        )
        .unwrap();
        assert!(!r.verdict.ready && r.replayed.is_none());
        assert_eq!(host_view(&images.paths()[0]).unwrap(), None);
    }
}
