//! `pmpool`: make and inspect `pmalloc` pool files from the command line.
//!
//! ```text
//! pmpool create FILE --size 64M [--layout NAME] [--lanes N] [--force]
//! pmpool info FILE            header, layout, lanes, sizes, recovery, statistics, damage
//! pmpool check FILE [--repair] open + recovery report + check(); exit 1 on damage
//! pmpool objects FILE [--type N]
//! pmpool demo [--pool FILE] [--keys N] [--seed S] [--direct]
//!                             a key-value store that crashes itself and recovers
//! ```
//!
//! `info`, `objects` and `check` work on a private copy of the file read into memory:
//! opening a pool runs recovery, which writes, and inspecting must not change the file.
//! `check --repair` opens the file itself, so recovery's replay and header repair are
//! written back.
//!
//! Exit status ([`Outcome::exit_code`]): 0 done (for `check`: consistent), 1 damage
//! found by `check`, 2 a usage error or a command that could not run (unreadable file,
//! not a pool, bad size).
//!
//! Adding a subcommand (a `demo`, transaction-log inspection, ...): a module with a
//! clap `Args` struct and `fn run(&Args, &mut dyn Write) -> Result<Outcome,
//! PmpoolError>`, a variant of [`Command`], and its arm in [`run`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod check;
pub mod create;
pub mod demo;
mod error;
pub mod info;
pub mod objects;
mod private;
mod show;
pub mod size;

pub use error::PmpoolError;
pub use private::PrivateCopy;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "pmpool",
    version,
    about = "Create and inspect pmalloc pool files"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a pool file.
    Create(create::CreateArgs),
    /// Show a pool's header, layout, recovery report, statistics and damage.
    Info(info::InfoArgs),
    /// Open a pool (with recovery) and check its heap; exit 1 on damage.
    Check(check::CheckArgs),
    /// List a pool's allocated objects.
    Objects(objects::ObjectsArgs),
    /// The main demo: load a persistent key-value store, crash at a random point,
    /// reopen, recover, verify, and say what was found.
    Demo(demo::DemoArgs),
    /// The demo's writer process (run by `demo`).
    #[command(hide = true)]
    DemoWriter(demo::WriterArgs),
}

/// How a command ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for `check`, the pool is consistent.
    Clean,
    /// `check` found damage.
    Damaged,
}

impl Outcome {
    /// The process exit status: 0 clean, 1 damaged.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Damaged => 1,
        }
    }
}

/// Exit status of a command that could not run.
pub const EXIT_ERROR: u8 = 2;

/// Runs `cli`, writing the report to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    match &cli.command {
        Command::Create(a) => create::run(a, out),
        Command::Info(a) => info::run(a, out),
        Command::Check(a) => check::run(a, out),
        Command::Objects(a) => objects::run(a, out),
        Command::Demo(a) => demo::run(a, out),
        Command::DemoWriter(a) => demo::writer(a, out),
    }
}
