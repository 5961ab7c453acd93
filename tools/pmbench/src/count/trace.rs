//! A breakpoint tracer: counts how often each persistence instruction of a child process
//! executes, natively, on the CPU's own code path (clwb, AVX-512 or movdir64b copies, as
//! the library picked them at start-up).
//!
//! The child stops itself (`SIGSTOP`) before and after each timed region. At the first
//! stop the tracer reads `/proc/<pid>/maps`, checks the first byte of every site found by
//! `objdump` at its runtime address, and writes `int3` over it. Each hit then traps: the
//! tracer counts it, puts the original byte back, single-steps the instruction, and
//! writes `int3` again. At every stop it takes a snapshot of the hit counts; the counts
//! of a timed region are the difference of the two snapshots around it.
//!
//! It follows one thread: a second thread could run a site while its original byte is
//! back for the single-step, and be missed. Workloads with threads are not traced.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::sites::{scan, Site};
use super::CountError;

const INT3: u8 = 0xCC;

/// The persistence instructions of one mapped object file.
#[derive(Debug, Clone)]
pub struct TracedObject {
    /// The file.
    pub path: PathBuf,
    /// Its sites.
    pub sites: Vec<Site>,
}

/// What a traced run produced.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The objects whose sites were patched.
    pub objects: Vec<TracedObject>,
    /// At each stop of the child, the hits of every site so far, in the order of
    /// `objects` then `sites`.
    pub marks: Vec<Vec<u64>>,
    /// The child's standard output.
    pub stdout: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Exited(i32),
    Killed(i32),
    Stopped(i32),
}

fn os_err(what: &'static str) -> CountError {
    CountError::Ptrace {
        what,
        source: std::io::Error::last_os_error(),
    }
}

fn wait(pid: libc::pid_t) -> Result<Stop, CountError> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(os_err("waitpid"));
        }
    }
    Ok(if libc::WIFEXITED(status) {
        Stop::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Stop::Killed(libc::WTERMSIG(status))
    } else {
        Stop::Stopped(libc::WSTOPSIG(status))
    })
}

/// A ptrace request with integer arguments; `Ok(value)` unless it failed.
fn request(
    what: &'static str,
    req: libc::c_uint,
    pid: libc::pid_t,
    addr: u64,
    data: u64,
) -> Result<i64, CountError> {
    // SAFETY: errno is thread-local; it is cleared so a PEEK returning -1 can be told
    // from a failure.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: every request used here takes (pid, addr, data) as integers or a pointer
    // to a live `user_regs_struct` (GETREGS/SETREGS), and acts on our stopped tracee.
    let r = unsafe {
        libc::ptrace(
            req,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    // SAFETY: reading this thread's errno.
    if r == -1 && unsafe { *libc::__errno_location() } != 0 {
        return Err(os_err(what));
    }
    Ok(r)
}

fn resume(req: libc::c_uint, pid: libc::pid_t, sig: i32) -> Result<(), CountError> {
    request("resume", req, pid, 0, u64::from(sig.unsigned_abs())).map(|_| ())
}

fn read_byte(pid: libc::pid_t, addr: u64) -> Result<u8, CountError> {
    Ok(request("peek", libc::PTRACE_PEEKTEXT, pid, addr, 0)?.cast_unsigned() as u8)
}

fn write_byte(pid: libc::pid_t, addr: u64, byte: u8) -> Result<(), CountError> {
    let word = request("peek", libc::PTRACE_PEEKTEXT, pid, addr, 0)?.cast_unsigned();
    let word = (word & !0xff) | u64::from(byte);
    request("poke", libc::PTRACE_POKETEXT, pid, addr, word).map(|_| ())
}

fn regs(pid: libc::pid_t) -> Result<libc::user_regs_struct, CountError> {
    // SAFETY: all-zero is a valid value of this plain-integer struct.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    request("getregs", libc::PTRACE_GETREGS, pid, 0, &raw mut r as u64)?;
    Ok(r)
}

fn set_regs(pid: libc::pid_t, r: &libc::user_regs_struct) -> Result<(), CountError> {
    request(
        "setregs",
        libc::PTRACE_SETREGS,
        pid,
        0,
        std::ptr::from_ref(r) as u64,
    )
    .map(|_| ())
}

/// Load bias of every mapped file `want`s: the start of its mapping at file offset 0
/// (these are position-independent objects, so runtime = bias + objdump address).
fn mapped_objects(
    pid: libc::pid_t,
    want: &dyn Fn(&str) -> bool,
) -> Result<Vec<(PathBuf, u64)>, CountError> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
        CountError::Ptrace {
            what: "read maps",
            source,
        }
    })?;
    let mut out: Vec<(PathBuf, u64)> = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6
            || !f[5].starts_with('/')
            || !want(f[5])
            || !f[2].trim_start_matches('0').is_empty()
        {
            continue;
        }
        let start = u64::from_str_radix(f[0].split('-').next().unwrap_or(""), 16).unwrap_or(0);
        let path = PathBuf::from(f[5]);
        if !out.iter().any(|(p, _)| *p == path) {
            out.push((path, start));
        }
    }
    Ok(out)
}

/// Runs `cmd` under the tracer; `want` selects the mapped files whose persistence
/// instructions are counted (by path).
pub fn trace(mut cmd: Command, want: &dyn Fn(&str) -> bool) -> Result<Traced, CountError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe ptrace system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| CountError::Ptrace {
        what: "spawn",
        source,
    })?;
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let result = run_traced(pid, want);
    if result.is_err() {
        // SAFETY: killing and reaping our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = wait(pid);
    }
    let (objects, marks) = result?;
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)
            .map_err(|source| CountError::Ptrace {
                what: "read stdout",
                source,
            })?;
    }
    Ok(Traced {
        objects,
        marks,
        stdout,
    })
}

type Patched = (Vec<TracedObject>, Vec<Vec<u64>>);

fn run_traced(pid: libc::pid_t, want: &dyn Fn(&str) -> bool) -> Result<Patched, CountError> {
    // The exec stop.
    match wait(pid)? {
        Stop::Stopped(libc::SIGTRAP) => {}
        other => return Err(CountError::Child(format!("no exec stop: {other:?}"))),
    }
    request(
        "setoptions",
        libc::PTRACE_SETOPTIONS,
        pid,
        0,
        libc::PTRACE_O_EXITKILL as u64,
    )?;
    let mut objects: Vec<TracedObject> = Vec::new();
    let mut at: HashMap<u64, (usize, u8)> = HashMap::new(); // runtime addr -> (index, byte)
    let mut hits: Vec<u64> = Vec::new();
    let mut marks = Vec::new();
    let mut sig = 0;
    loop {
        resume(libc::PTRACE_CONT, pid, sig)?;
        sig = 0;
        match wait(pid)? {
            Stop::Exited(0) => return Ok((objects, marks)),
            Stop::Exited(code) => return Err(CountError::Child(format!("exited with {code}"))),
            Stop::Killed(s) => return Err(CountError::Child(format!("killed by signal {s}"))),
            Stop::Stopped(libc::SIGSTOP) => {
                if objects.is_empty() {
                    objects = patch(pid, want, &mut at)?;
                    hits = vec![0; at.len()];
                }
                marks.push(hits.clone());
            }
            Stop::Stopped(libc::SIGTRAP) => {
                let mut r = regs(pid)?;
                let addr = r.rip - 1;
                let Some(&(i, byte)) = at.get(&addr) else {
                    sig = libc::SIGTRAP;
                    continue;
                };
                hits[i] += 1;
                write_byte(pid, addr, byte)?;
                r.rip = addr;
                set_regs(pid, &r)?;
                resume(libc::PTRACE_SINGLESTEP, pid, 0)?;
                match wait(pid)? {
                    Stop::Stopped(libc::SIGTRAP) => write_byte(pid, addr, INT3)?,
                    other => {
                        return Err(CountError::Child(format!("single-step ended in {other:?}")))
                    }
                }
            }
            Stop::Stopped(s) => sig = s,
        }
    }
}

/// Finds and patches every site of the wanted objects; fills `at`.
fn patch(
    pid: libc::pid_t,
    want: &dyn Fn(&str) -> bool,
    at: &mut HashMap<u64, (usize, u8)>,
) -> Result<Vec<TracedObject>, CountError> {
    let mut objects = Vec::new();
    for (path, bias) in mapped_objects(pid, want)? {
        let sites = scan(&path)?;
        for s in &sites {
            let addr = bias + s.addr;
            let byte = read_byte(pid, addr)?;
            if byte != s.first_byte {
                return Err(CountError::SiteMismatch {
                    path,
                    addr: s.addr,
                    expected: s.first_byte,
                    found: byte,
                });
            }
            at.insert(addr, (at.len(), byte));
        }
        objects.push(TracedObject { path, sites });
    }
    for (&addr, _) in at.iter() {
        write_byte(pid, addr, INT3)?;
    }
    Ok(objects)
}
