//! `pmpool objects FILE [--type N]`: the allocated objects, in pool order.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use pmalloc::PPtr;

use crate::show::open_private;
use crate::{Outcome, PmpoolError};

/// Arguments of `objects`.
#[derive(Debug, Args)]
pub struct ObjectsArgs {
    /// The pool file.
    pub file: PathBuf,
    /// Only objects of this type number.
    #[arg(long = "type")]
    pub type_num: Option<u32>,
}

/// One line per object (`offset size type kind`, the root marked), then a count.
pub fn run(args: &ObjectsArgs, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    let (heap, _) = open_private(&args.file)?;
    let root = heap.root().map(PPtr::raw);
    let objects = match args.type_num {
        Some(t) => heap.objects_of_type(t),
        None => heap.objects(),
    };
    writeln!(out, "{:>14} {:>12} {:>10}  kind", "offset", "size", "type")?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for o in objects {
        count += 1;
        bytes += o.size;
        writeln!(
            out,
            "{:>#14x} {:>12} {:>10}  {}{}",
            o.ptr,
            o.size,
            o.type_num,
            if o.extent { "extent" } else { "run" },
            if Some(o.ptr) == root { " (root)" } else { "" }
        )?;
    }
    writeln!(out, "{count} objects, {bytes} bytes")?;
    Ok(Outcome::Clean)
}
