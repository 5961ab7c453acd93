//! `pmpool create FILE --size 64M [--layout NAME] [--lanes N] [--force]`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use arch::{FileMedia, FileOptions};
use clap::Args;
use pmalloc::layout::{Layout, CHUNK, DEFAULT_LANES};
use pmalloc::pool_header::LAYOUT_NAME_LEN;
use pmalloc::{CreateError, CreateOptions, Heap};

use crate::show::uuid;
use crate::size::{parse_size, show_size};
use crate::{Outcome, PmpoolError};

/// Arguments of `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The pool file to create.
    pub file: PathBuf,
    /// Pool size: bytes, or with a K, M, G or T suffix (at least 8M).
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// Layout name, checked by programs that open the pool (at most 32 bytes).
    #[arg(long, default_value = "pmpool")]
    pub layout: String,
    /// Lanes: threads that can allocate at once without waiting.
    #[arg(long, default_value_t = DEFAULT_LANES)]
    pub lanes: u32,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// 16 random bytes from the OS.
fn random_uuid(path: &std::path::Path) -> Result<[u8; 16], PmpoolError> {
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut u))
        .map_err(|source| PmpoolError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(u)
}

/// Validates everything first (so a refused pool leaves no file behind), then makes
/// the file, formats it and closes the pool.
pub fn run(args: &CreateArgs, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    let path = &args.file;
    let size =
        usize::try_from(args.size).map_err(|_| PmpoolError::SizeTooLarge { size: args.size })?;
    if args.layout.len() > LAYOUT_NAME_LEN {
        return Err(PmpoolError::LayoutName {
            len: args.layout.len(),
        });
    }
    let layout =
        Layout::compute(size, args.lanes, Layout::default_runtime_len(size)).map_err(|e| {
            PmpoolError::Create {
                path: path.clone(),
                source: CreateError::Layout(e),
            }
        })?;
    if path.exists() && !args.force {
        return Err(PmpoolError::Exists { path: path.clone() });
    }
    let uuid_bytes = random_uuid(path)?;
    let media = FileMedia::open(
        path,
        FileOptions {
            create_len: Some(size),
            ..FileOptions::default()
        },
    )
    .map_err(|source| PmpoolError::Map {
        path: path.clone(),
        source,
    })?;
    let opts = CreateOptions {
        creation_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        lanes: args.lanes,
        ..CreateOptions::new(&args.layout, uuid_bytes)
    };
    let heap = Heap::create(media, &opts).map_err(|source| PmpoolError::Create {
        path: path.clone(),
        source,
    })?;
    drop(heap.close());
    writeln!(
        out,
        "created {}: {} pool, layout {:?}, {} lanes, {} chunks of {}, uuid {}",
        path.display(),
        show_size(layout.pool_size as u64),
        args.layout,
        layout.nlanes,
        layout.nchunks,
        show_size(CHUNK as u64),
        uuid(&uuid_bytes)
    )?;
    Ok(Outcome::Clean)
}
