//! `pmpool info FILE`: what the pool is and holds.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use pmalloc::class::CLASSES;
use pmalloc::layout::CHUNK;
use pmalloc::pool_header::{FLAG_EADR, FORMAT_VERSION, MAGIC};

use crate::show::{layout_name, open_private, ppm_percent, recovery, root, uuid};
use crate::size::show_size;
use crate::{Outcome, PmpoolError};

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The pool file.
    pub file: PathBuf,
}

/// Prints the header, the layout, what recovery did (on a private copy), the heap
/// statistics and the root.
pub fn run(args: &InfoArgs, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    let (heap, report) = open_private(&args.file)?;
    let h = heap.pool_header();
    let l = heap.layout();
    let s = heap.stats();
    writeln!(out, "file {}", args.file.display())?;
    writeln!(out, "header:")?;
    writeln!(
        out,
        "  format          {} version {FORMAT_VERSION}",
        String::from_utf8_lossy(&MAGIC[..7])
    )?;
    writeln!(out, "  uuid            {}", uuid(&h.uuid))?;
    writeln!(out, "  layout name     {:?}", layout_name(&h.layout_name))?;
    writeln!(
        out,
        "  created         {} (seconds since 1970)",
        h.creation_time
    )?;
    let mode = if h.flags & FLAG_EADR != 0 {
        "eADR"
    } else {
        "ADR"
    };
    writeln!(out, "  flags           {:#x} ({mode})", h.flags)?;
    writeln!(out, "layout:")?;
    writeln!(
        out,
        "  pool size       {} ({})",
        l.pool_size,
        show_size(l.pool_size as u64)
    )?;
    writeln!(out, "  lanes           {} at {:#x}", l.nlanes, l.lanes_off)?;
    writeln!(
        out,
        "  runtime area    {:#x}, {}",
        l.runtime_off,
        show_size(l.runtime_len as u64)
    )?;
    writeln!(
        out,
        "  chunk table     {:#x}, {} chunks of {}",
        l.chunks_off,
        l.nchunks,
        show_size(CHUNK as u64)
    )?;
    writeln!(
        out,
        "  heap            {:#x} to {:#x}",
        l.heap_off,
        l.heap_end()
    )?;
    writeln!(out, "  backup header   {:#x}", l.backup_off)?;
    recovery(&report, out)?;
    writeln!(out, "heap:")?;
    writeln!(out, "  root            {}", root(&heap))?;
    writeln!(
        out,
        "  objects         {} ({} bytes asked for, {} occupied)",
        s.objects, s.allocated_bytes, s.occupied_bytes
    )?;
    writeln!(
        out,
        "  free chunks     {} of {} (largest span {}, fragmentation {})",
        s.free_chunks,
        s.chunks,
        s.largest_free_span,
        ppm_percent(s.fragmentation_ppm)
    )?;
    writeln!(out, "  extents         {}", s.extents)?;
    let runs: Vec<String> = s
        .runs
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(c, n)| format!("{n}x{}", CLASSES[c]))
        .collect();
    writeln!(
        out,
        "  runs            {} (count x slot size), {} bytes in free slots",
        if runs.is_empty() {
            "none".into()
        } else {
            runs.join(" ")
        },
        s.free_slot_bytes
    )?;
    match heap.check() {
        Ok(_) => writeln!(out, "  check           passed")?,
        Err(e) => writeln!(out, "  check           FAILED: {e}")?,
    }
    Ok(Outcome::Clean)
}
