//! `pmpool`: see the library docs (`pmpool::Cli`) or `pmpool --help`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pmpool::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = pmpool::run(&cli, &mut out);
    let _ = out.flush();
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            eprintln!("pmpool: {e}");
            ExitCode::from(pmpool::EXIT_ERROR)
        }
    }
}
