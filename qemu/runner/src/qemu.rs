//! One boot: the QEMU command line, the wall-clock limit, the kill, the verdict.

use std::fmt::{self, Write as _};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use pm_qemu_proto::report::{Line, Summary};
use pm_qemu_proto::{BootArgs, GuestExit};

use crate::{Images, Kernel, RunnerError};

/// Size of each NVDIMM image (QEMU's `size=` must match the file).
pub const IMAGE_SIZE: u64 = 64 << 20;

/// The QEMU binary: `PM_QEMU` if set, else `qemu-system-x86_64`.
pub fn qemu_program() -> String {
    std::env::var("PM_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// Whether QEMU can be run here (`--version` succeeds).
pub fn qemu_available() -> bool {
    Command::new(qemu_program())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What to boot and how it may end.
#[derive(Debug, Clone)]
pub struct BootSpec<'a> {
    /// The kernel.
    pub kernel: &'a Kernel,
    /// The NVDIMM images (1 to 4), attached in order.
    pub images: &'a Images,
    /// The kernel command line.
    pub args: BootArgs,
    /// A raw command line used instead of `args` (to test the kernel's parser with
    /// lines `BootArgs` cannot express).
    pub raw_append: Option<&'a str>,
    /// Wall-clock limit: QEMU is killed (SIGKILL) after it, and the boot counts as
    /// hung.
    pub timeout: Duration,
    /// A planned crash: kill QEMU (SIGKILL) this long after the kernel's first serial
    /// output (counting from there, not from spawn, keeps QEMU's start-up time, which
    /// varies with load, out of where the kill lands).
    pub kill_after: Option<Duration>,
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The kernel wrote to `isa-debug-exit`.
    Guest(GuestExit),
    /// Status 0: with `-no-reboot`, a triple fault (or a reset).
    TripleFault,
    /// Another status: QEMU itself failed (bad option, missing image, ...).
    Qemu(i32),
    /// Killed by the runner after the planned delay.
    KilledAsPlanned,
    /// Killed by the runner at the wall-clock limit: the kernel hung.
    TimedOut,
    /// Killed by a signal the runner did not send.
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Guest(g) => write!(f, "{g:?} (status {})", g.qemu_status()),
            Exit::TripleFault => write!(f, "status 0 (triple fault or reset)"),
            Exit::Qemu(code) => write!(f, "QEMU error (status {code})"),
            Exit::KilledAsPlanned => write!(f, "killed as planned"),
            Exit::TimedOut => write!(f, "timed out (killed)"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Everything one boot produced.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    /// The QEMU command line, as a shell would show it.
    pub command: String,
    /// How it ended.
    pub exit: Exit,
    /// Everything the kernel wrote to COM1.
    pub serial: String,
    /// QEMU's own error output.
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

impl BootOutcome {
    /// The recognised serial lines.
    pub fn lines(&self) -> impl Iterator<Item = Line<'_>> {
        self.serial.lines().filter_map(Line::parse)
    }

    /// The closing `N passed, N failed`, if printed.
    pub fn summary(&self) -> Option<Summary> {
        self.lines().find_map(|l| match l {
            Line::Summary(s) => Some(s),
            _ => None,
        })
    }

    /// The last `n` lines of the serial log (with a note of how many were left out).
    pub fn serial_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        let skip = lines.len().saturating_sub(n);
        let mut out = String::new();
        if skip > 0 {
            let _ = writeln!(out, "[... {skip} lines ...]");
        }
        for l in &lines[skip..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Names of the tests reported failed.
    pub fn failed_tests(&self) -> Vec<&str> {
        self.lines()
            .filter_map(|l| match l {
                Line::TestFailed { name, .. } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// A pass: exit 33 and a summary with no failure and at least one pass.
    pub fn passed(&self) -> bool {
        self.exit == Exit::Guest(GuestExit::Pass) && self.summary().is_some_and(|s| s.is_pass())
    }
}

/// The QEMU command for `spec` (see `/work/shared/QEMU-NOTES.md` and `docs/qemu.md`).
pub fn command(spec: &BootSpec<'_>) -> Result<Command, RunnerError> {
    let n = spec.images.paths().len();
    if !(1..=4).contains(&n) {
        return Err(RunnerError::NvdimmCount { count: n });
    }
    let size_mib = spec.images.size() >> 20;
    // Hot-plug space must hold every NVDIMM: two slots per device, and 2 GiB (one
    // NVDIMM) or 4 GiB (more) of maxmem, more for large images.
    let need_gib = (256 + n as u64 * size_mib).div_ceil(1024) + 1;
    let maxmem = need_gib.max(if n == 1 { 2 } else { 4 });
    let mut cmd = Command::new(qemu_program());
    cmd.args(["-machine", "pc,nvdimm=on"])
        .args(["-m", &format!("256M,slots={},maxmem={maxmem}G", 2 * n)]);
    for (i, path) in spec.images.paths().iter().enumerate() {
        let id = i + 1;
        cmd.arg("-object").arg(format!(
            "memory-backend-file,id=mem{id},share=on,mem-path={},size={size_mib}M",
            path.display()
        ));
        cmd.args(["-device", &format!("nvdimm,id=nv{id},memdev=mem{id}")]);
    }
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args([
            "-serial",
            "stdio",
            "-display",
            "none",
            "-no-reboot",
            "-nodefaults",
        ])
        .arg("-kernel")
        .arg(&spec.kernel.elf)
        .arg("-append")
        .arg(
            spec.raw_append
                .map_or_else(|| spec.args.to_string(), str::to_owned),
        );
    Ok(cmd)
}

/// `cmd` as one line a shell would accept (arguments with spaces quoted).
pub fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Kills the child if the runner unwinds before reaping it, so no QEMU outlives a
/// failed test.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads `stream` to its end on a thread; `first` (if given) is set when the first
/// bytes arrive.
fn drain(
    stream: Option<impl Read + Send + 'static>,
    first: Option<Arc<OnceLock<Instant>>>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut s) = stream {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(f) = &first {
                    let _ = f.set(Instant::now());
                }
                bytes.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Boots once and waits for the end: the kernel's exit, the planned kill, or the
/// wall-clock limit (SIGKILL either way). Serial output is captured up to the end,
/// including a kill: what the guest wrote to the UART before it is already in the pipe.
pub fn boot(spec: &BootSpec<'_>) -> Result<BootOutcome, RunnerError> {
    let mut cmd = command(spec)?;
    let command = shell_line(&cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunnerError::Spawn {
            program: qemu_program(),
            source,
        })?;
    let mut child = Reaper(child);
    let first_output = Arc::new(OnceLock::new());
    let out = drain(child.0.stdout.take(), Some(first_output.clone()));
    let err = drain(child.0.stderr.take(), None);
    let deadline = start + spec.timeout;
    let exit = loop {
        if let Some(status) = child.0.try_wait().map_err(RunnerError::Wait)? {
            break match (status.code(), status.signal()) {
                (Some(0), _) => Exit::TripleFault,
                (Some(code), _) => {
                    GuestExit::from_qemu_status(code).map_or(Exit::Qemu(code), Exit::Guest)
                }
                (None, sig) => Exit::Signal(sig.unwrap_or(0)),
            };
        }
        let planned = spec
            .kill_after
            .and_then(|d| first_output.get().map(|&t| t + d))
            .filter(|&t| t < deadline);
        let now = Instant::now();
        let limit = planned.unwrap_or(deadline);
        if now >= limit {
            child.0.kill().map_err(RunnerError::Wait)?;
            child.0.wait().map_err(RunnerError::Wait)?;
            break if planned.is_some() {
                Exit::KilledAsPlanned
            } else {
                Exit::TimedOut
            };
        }
        thread::sleep((limit - now).min(Duration::from_millis(1)));
    };
    let elapsed = start.elapsed();
    Ok(BootOutcome {
        command,
        exit,
        serial: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    })
}
