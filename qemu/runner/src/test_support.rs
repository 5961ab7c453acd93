//! What the workloads' unit tests share: boots made by hand, pools made on the host
//! standing in for the kernel's, and a cycle judged from them.

use std::fmt::{Display, Write as _};
use std::time::Duration;

use arch::{FileMedia, FileOptions};
use pm_qemu_proto::{GuestExit, Mode};

use crate::cycle::{Crash, CycleFailure, CycleRun, Workload};
use crate::{BootOutcome, Exit, Images};

/// A boot that ended with `exit` after printing `serial`.
pub fn outcome(exit: Exit, serial: String) -> BootOutcome {
    BootOutcome {
        command: String::new(),
        exit,
        serial,
        stderr: String::new(),
        elapsed: Duration::ZERO,
    }
}

/// `lines`, one a line, as a boot prints them.
pub fn text<L: Display>(lines: &[L]) -> String {
    lines.iter().fold(String::new(), |mut t, l| {
        let _ = writeln!(t, "{l}");
        t
    })
}

/// A fresh image of `size` bytes that `write` and then `verify` ran on (on the host,
/// in place of the kernel's writer and verifier boots), and the serial text of both;
/// the verifier's closes with a pass of `test`.
pub fn host_boots<L: Display>(
    size: u64,
    test: &str,
    write: impl FnOnce(&FileMedia, &mut dyn FnMut(L)),
    verify: impl FnOnce(&FileMedia, &mut dyn FnMut(L)),
) -> (Images, String, String) {
    let images = Images::create(1, size).unwrap();
    let media = FileMedia::open(&images.paths()[0], FileOptions::default()).unwrap();
    let mut writer = Vec::new();
    write(&media, &mut |l| writer.push(l));
    let mut verifier = Vec::new();
    verify(&media, &mut |l| verifier.push(l));
    drop(media);
    let verifier = text(&verifier) + &format!("test {test} ... ok\n1 passed, 0 failed\n");
    (images, text(&writer), verifier)
}

/// `workload`'s judgement of a cycle seeded `seed` whose writer printed `writer` and
/// was stopped by `crash`, and whose verifier passed printing `verifier`.
pub fn judge<W: Workload>(
    workload: &W,
    seed: u64,
    crash: Crash,
    images: &Images,
    writer: String,
    verifier: String,
) -> Result<W::Report, CycleFailure> {
    let exit = match crash {
        Crash::Kill(_) => Exit::KilledAsPlanned,
        Crash::AtFence(_) => Exit::Guest(GuestExit::Crash),
    };
    let writer = outcome(exit, writer);
    let verifier = outcome(Exit::Guest(GuestExit::Pass), verifier);
    workload.check(&CycleRun {
        seed,
        mode: Mode::Direct,
        crash,
        writer: &writer,
        verifier: &verifier,
        images,
    })
}
