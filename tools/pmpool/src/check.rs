//! `pmpool check FILE [--repair]`: open with recovery, report, `check()`; exit 1 on
//! damage.

use std::io::Write;
use std::path::{Path, PathBuf};

use arch::{FileMedia, FileOptions, Media};
use clap::Args;
use pmalloc::{Heap, OpenOptions};

use crate::show::{recovery, root};
use crate::{Outcome, PmpoolError, PrivateCopy};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The pool file.
    pub file: PathBuf,
    /// Write recovery (op-record replay, header repair) back to the file; without it
    /// the file is not changed.
    #[arg(long)]
    pub repair: bool,
}

/// Damage is: a pool that does not open, a header copy that needed repair, structures
/// open set aside, or a failed `check()`. Replayed and torn op records are what any
/// crash leaves and are only reported.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    let path = &args.file;
    if args.repair {
        let media =
            FileMedia::open(path, FileOptions::default()).map_err(|source| PmpoolError::Map {
                path: path.clone(),
                source,
            })?;
        check_on(media, path, true, out)
    } else {
        check_on(PrivateCopy::read(path)?, path, false, out)
    }
}

fn check_on<M: Media>(
    media: M,
    path: &Path,
    repair: bool,
    out: &mut dyn Write,
) -> Result<Outcome, PmpoolError> {
    let (heap, report) = match Heap::open(media, &OpenOptions::default()) {
        Ok(h) => h,
        Err(e) => {
            writeln!(out, "{}: DAMAGED: cannot open: {e}", path.display())?;
            return Ok(Outcome::Damaged);
        }
    };
    recovery(&report, out)?;
    let mut problems = usize::from(report.repaired.is_some()) + report.damage.len();
    match heap.check() {
        Ok(free) => writeln!(out, "heap check: passed ({free} free chunks)")?,
        Err(e) => {
            problems += 1;
            writeln!(out, "heap check: FAILED: {e}")?;
        }
    }
    let s = heap.stats();
    writeln!(out, "root {}, {} objects", root(&heap), s.objects)?;
    if repair {
        drop(heap.close());
        writeln!(out, "recovery written to {}", path.display())?;
    }
    if problems == 0 {
        writeln!(out, "{}: consistent", path.display())?;
        Ok(Outcome::Clean)
    } else {
        writeln!(out, "{}: DAMAGED ({problems} problems)", path.display())?;
        Ok(Outcome::Damaged)
    }
}
