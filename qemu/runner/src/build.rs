//! Building the kernel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::RunnerError;

/// A built kernel ELF.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Path of the ELF QEMU boots.
    pub elf: PathBuf,
}

/// `qemu/kernel`, found from this crate's location in the repository.
pub fn kernel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runner lives in qemu/")
        .join("kernel")
}

impl Kernel {
    /// The command that builds the kernel: `cargo build --release` run inside
    /// `qemu/kernel` (whose `.cargo/config.toml` sets target and link flags), into
    /// `qemu/kernel/target`, with the flags an outer cargo may have exported removed.
    pub fn build_command() -> Command {
        let dir = kernel_dir();
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--release", "--quiet"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", dir.join("target"));
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_RUSTFLAGS",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Where the build puts the ELF.
    pub fn elf_path() -> PathBuf {
        kernel_dir().join("target/x86_64-unknown-none/release/pm-kernel")
    }

    /// Builds the kernel (incrementally: a no-op when nothing changed). With
    /// `PM_KERNEL=<path>` set, uses that ELF instead and builds nothing.
    pub fn build() -> Result<Kernel, RunnerError> {
        if let Some(elf) = std::env::var_os("PM_KERNEL") {
            return Ok(Kernel { elf: elf.into() });
        }
        let mut cmd = Self::build_command();
        let status = cmd.status().map_err(|source| RunnerError::Spawn {
            program: "cargo".into(),
            source,
        })?;
        if !status.success() {
            return Err(RunnerError::KernelBuild { status });
        }
        let elf = Self::elf_path();
        if !elf.is_file() {
            return Err(RunnerError::KernelMissing { path: elf });
        }
        Ok(Kernel { elf })
    }

    /// [`Kernel::build`] once per process (tests share it); a failed build is
    /// reported to every caller.
    pub fn shared() -> Result<&'static Kernel, &'static RunnerError> {
        static KERNEL: OnceLock<Result<Kernel, RunnerError>> = OnceLock::new();
        KERNEL.get_or_init(Kernel::build).as_ref()
    }
}
