//! `cargo xtask <task>`: the project's tasks, each printing the commands it runs.
//!
//! * `test`: format check, clippy with warnings denied (host workspace and kernel), the
//!   kernel build, the `no_std` build of the crates the kernel links, a pmbench smoke
//!   round, then every host test (which include the QEMU suites, the pmalloc and pmrt
//!   suites, the host/QEMU pool-format tests and the log, heap and transaction crash
//!   cycles in `qemu/runner/tests`, and the `pmpool` CLI tests); the output ends with
//!   the test runner's summary.
//! * `qemu [pm-qemu options]`: builds the kernel and runs the QEMU suites (1 and 2
//!   NVDIMMs), the pmalloc and pmrt suites, the persistence and pool-pattern pairs and
//!   the log, heap and transaction crash-reboot cycles (direct and ADR mode) through the
//!   runner binary, printing every command.
//! * `bench [ARGS]`: runs pmbench in release mode (with PMDK when libpmemobj-dev is
//!   installed); ARGS go to pmbench, default `--all --plot`. See `docs/benchmarks.md`.
//! * `setup`: installs what the tests need (the kernel target, QEMU, libpmemobj),
//!   idempotently.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The test kernel's own workspace (built for `x86_64-unknown-none` from there, where its
/// `.cargo/config.toml` applies).
fn kernel_dir() -> PathBuf {
    root().join("qemu/kernel")
}

/// Runs `cmd`, echoing it first; returns whether it succeeded.
fn run(cmd: &mut Command) -> bool {
    run_quiet_end(cmd, false)
}

/// As [`run`], inside the kernel's workspace.
fn run_kernel(cmd: &mut Command) -> bool {
    println!("\n==> (in qemu/kernel)");
    run_in(cmd, &kernel_dir(), false)
}

/// As [`run`]; with `last` the closing "<==" line is left out, so the output ends with
/// the command's own last line (the test runner's summary).
fn run_quiet_end(cmd: &mut Command, last: bool) -> bool {
    run_in(cmd, &root(), last)
}

/// As [`run_quiet_end`], in `dir`.
fn run_in(cmd: &mut Command, dir: &Path, last: bool) -> bool {
    let shown: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    println!("\n==> {}", shown.join(" "));
    let start = Instant::now();
    let ok = cmd.current_dir(dir).status().is_ok_and(|s| s.success());
    if !last || !ok {
        println!(
            "<== {} in {:.1}s",
            if ok { "ok" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
    }
    ok
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn have_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn have_libpmemobj() -> bool {
    Command::new("dpkg")
        .args(["-s", "libpmemobj-dev"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo run -p pmbench`, with the `pmdk` feature when PMDK's headers are installed.
fn pmbench(release: bool) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "-q", "-p", "pmbench"]);
    if release {
        cmd.arg("--release");
    }
    if have_libpmemobj() {
        cmd.args(["--features", "pmdk"]);
    }
    cmd.arg("--");
    cmd
}

/// Runs the benchmarks: `cargo xtask bench [pmbench args]`.
fn bench(args: &[String]) -> bool {
    let mut cmd = pmbench(true);
    if args.is_empty() {
        cmd.args(["--all", "--plot"]);
    } else {
        cmd.args(args);
    }
    run(&mut cmd)
}

/// Installs what the tests need, idempotently: the kernel target always (a no-op when
/// present), Debian packages only when missing and only as root.
fn setup() -> bool {
    let mut missing = Vec::new();
    if !have("qemu-system-x86_64", "--version") {
        missing.push("qemu-system-x86");
    }
    if !have_libpmemobj() {
        missing.push("libpmemobj-dev");
    }
    if !missing.is_empty() {
        if is_root() {
            let ok = run(Command::new("apt-get").args(["update", "-qq"]))
                && run(Command::new("apt-get")
                    .args(["install", "-y", "-qq"])
                    .args(&missing));
            if !ok {
                return false;
            }
        } else {
            eprintln!(
                "missing Debian packages: {} (run as root, or apt-get install them)",
                missing.join(" ")
            );
            return false;
        }
    }
    // RUSTUP_AUTO_INSTALL=0 on this machine kind: targets in rust-toolchain.toml are not
    // installed on demand, so add the kernel target explicitly.
    run(Command::new("rustup").args(["target", "add", "x86_64-unknown-none"]))
}

type Step = (&'static str, Box<dyn Fn() -> bool>);

/// The `no_std` crates of the root workspace that the kernel links.
const NO_STD_CRATES: [&str; 5] = ["arch", "pmalloc", "pmrt", "pm-qemu-proto", "pm-qemu-pool"];

/// Builds [`NO_STD_CRATES`] for the kernel target from the root workspace (their host
/// features are off there, so a `std` use would fail here).
fn no_std_build() -> bool {
    let mut cmd = cargo();
    cmd.arg("build");
    for c in NO_STD_CRATES {
        cmd.args(["-p", c]);
    }
    run(cmd.args(["--target", "x86_64-unknown-none"]))
}

fn test() -> bool {
    let steps: Vec<Step> = vec![
        ("setup", Box::new(setup)),
        (
            "format",
            Box::new(|| {
                run(cargo().args(["fmt", "--all", "--", "--check"]))
                    && run_kernel(cargo().args(["fmt", "--all", "--", "--check"]))
            }),
        ),
        (
            "clippy",
            Box::new(|| {
                run(cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            "kernel clippy",
            Box::new(|| run_kernel(cargo().args(["clippy", "--release", "--", "-D", "warnings"]))),
        ),
        (
            "kernel build",
            Box::new(|| run_kernel(cargo().args(["build", "--release"]))),
        ),
        ("no_std build", Box::new(no_std_build)),
        (
            "doc tests",
            Box::new(|| {
                run(cargo().args(["test", "--workspace", "--all-features", "--doc", "-q"]))
            }),
        ),
        (
            // A tiny interleaved round of two workloads: the harness, the C shim and
            // the PMDK child processes work (seconds; results go to target/).
            "pmbench smoke",
            Box::new(|| {
                run(pmbench(false).args([
                    "w1",
                    "w4",
                    "--quick",
                    "--rounds",
                    "1",
                    "--no-count",
                    "--out",
                    "target/pmbench-smoke",
                ]))
            }),
        ),
        (
            "host tests",
            Box::new(|| {
                let mut cmd = cargo();
                if have_nextest() {
                    cmd.args(["nextest", "run"]);
                } else {
                    cmd.arg("test");
                }
                run_quiet_end(
                    cmd.args(["--workspace", "--all-features", "--no-fail-fast"]),
                    true,
                )
            }),
        ),
    ];
    // The host tests run last so the output ends with the runner's summary; failures of
    // earlier steps are reported before them.
    let mut failed = Vec::new();
    let (last, rest) = steps.split_last().expect("steps");
    for (name, step) in rest {
        if !step() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!(
            "\nxtask test: FAILED steps so far: {} (running the host tests anyway)",
            failed.join(", ")
        );
    }
    let last_ok = (last.1)();
    failed.is_empty() && last_ok
}

/// Builds the kernel, then runs everything QEMU-based through the runner binary
/// (`pm-qemu all`), passing on extra options (`--seed S`, `--cycles N`, `--mode M`,
/// `--workload log|heap|tx`, `--ops N`, `--txs N`, `--from-cycle K`).
fn qemu(extra: &[String]) -> bool {
    setup()
        && run_kernel(cargo().args(["build", "--release"]))
        && run(cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "pm-qemu-runner",
                "--bin",
                "pm-qemu",
                "--",
                "all",
            ])
            .args(extra))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("qemu") => qemu(&args[1..]),
        Some("setup") => setup(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|qemu [--seed S] [--cycles N] [--mode direct|adr] [--workload log|heap|tx] [--ops N] [--txs N] [--from-cycle K]|bench [pmbench args]|setup>"
            );
            false
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
