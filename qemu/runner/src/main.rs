//! `pm-qemu`: build the test kernel and run its suites and crash cycles under QEMU.
//!
//! ```text
//! pm-qemu all [--seed S] [--cycles N]   suites (1 and 2 NVDIMMs), pmalloc and pmrt
//!                                       suites, persistence and pool pairs, log, heap
//!                                       and tx cycles
//! pm-qemu suite [--nvdimms N] [--suite NAME] [--seed S]
//! pm-qemu cycles [--workload log|heap|tx] [--mode direct|adr] [--seed S] [--cycles N]
//!                [--from-cycle K] [--records N] [--ops N] [--txs N]
//! ```
//!
//! Every QEMU command is printed; seeds are printed so a failure replays: `--seed S`
//! runs the same cycles again, `--from-cycle K --cycles 1` only cycle `K` of them.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use pm_qemu_proto::{BootArgs, Mode, Suite, DEFAULT_OPS};
use pm_qemu_runner::{
    crash_cycles, qemu_available, run_suite, CycleConfig, HeapWorkload, Images, Kernel,
    LogWorkload, TxWorkload, Workload, DEFAULT_TXS, IMAGE_SIZE,
};

/// Which crash-cycle workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Log,
    Heap,
    Tx,
}

/// Command-line options (all optional).
#[derive(Debug)]
struct Options {
    seed: u64,
    cycles: u32,
    nvdimms: usize,
    suite: Suite,
    mode: Option<Mode>,
    workload: Option<Which>,
    records: u32,
    ops: u32,
    txs: u32,
    from_cycle: u32,
}

fn parse(args: &[String]) -> Option<Options> {
    let mut o = Options {
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        cycles: 20,
        nvdimms: 1,
        suite: Suite::All,
        mode: None,
        workload: None,
        records: 4096,
        ops: DEFAULT_OPS,
        txs: DEFAULT_TXS,
        from_cycle: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next()?;
        let number = || -> Option<u64> {
            match value.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => value.parse().ok(),
            }
        };
        match flag.as_str() {
            "--seed" => o.seed = number()?,
            "--cycles" => o.cycles = u32::try_from(number()?).ok()?,
            "--nvdimms" => o.nvdimms = usize::try_from(number()?).ok()?,
            "--records" => o.records = u32::try_from(number()?).ok()?,
            "--ops" => o.ops = u32::try_from(number()?).ok()?,
            "--txs" => o.txs = u32::try_from(number()?).ok()?,
            "--from-cycle" => o.from_cycle = u32::try_from(number()?).ok()?,
            "--workload" => {
                o.workload = Some(match value.as_str() {
                    "log" => Which::Log,
                    "heap" => Which::Heap,
                    "tx" => Which::Tx,
                    _ => return None,
                });
            }
            "--suite" => o.suite = Suite::from_name(value)?,
            "--mode" => o.mode = Some(Mode::from_name(value)?),
            _ => return None,
        }
    }
    Some(o)
}

fn suite(kernel: &Kernel, nvdimms: usize, args: BootArgs) -> bool {
    match Images::create(nvdimms, IMAGE_SIZE) {
        Ok(images) => suite_on(kernel, &images, args),
        Err(e) => report(Err::<(), _>(e), |()| ()),
    }
}

/// Prints `r`'s success with `show`, or its error; returns whether it succeeded.
fn report<T, E: std::fmt::Display>(r: Result<T, E>, show: impl FnOnce(T)) -> bool {
    match r {
        Ok(v) => {
            show(v);
            true
        }
        Err(e) => {
            eprintln!("{e}");
            false
        }
    }
}

fn suite_on(kernel: &Kernel, images: &Images, args: BootArgs) -> bool {
    report(run_suite(kernel, images, args), |o| {
        println!("$ {}", o.command);
        print!("{}", o.serial);
        println!("boot: {} ms", o.elapsed.as_millis());
    })
}

/// Boot 1 runs `first` on fresh images, boot 2 runs `second` on the same images: the
/// persistence pair (a seeded pattern over two NVDIMMs) and the pool pair (the seeded
/// pool pattern on NVDIMM 0).
fn pair(kernel: &Kernel, nvdimms: usize, seed: u64, first: Suite, second: Suite) -> bool {
    let Ok(images) = Images::create(nvdimms, IMAGE_SIZE) else {
        return false;
    };
    let args = |suite| BootArgs {
        suite,
        seed,
        nvdimms: Some(nvdimms as u32),
        ..BootArgs::default()
    };
    suite_on(kernel, &images, args(first)) && suite_on(kernel, &images, args(second))
}

fn cycles_of<W: Workload>(kernel: &Kernel, o: &Options, mode: Mode, workload: &W) -> bool {
    let cfg = CycleConfig {
        from_cycle: o.from_cycle,
        ..CycleConfig::of(workload, o.seed, o.cycles, mode)
    };
    println!(
        "crash cycles: workload {}, mode {}, seed {:#x}, {} cycles from cycle {} \
         (replay: pm-qemu cycles --workload {} --mode {} --seed {:#x})",
        workload.name(),
        mode.name(),
        o.seed,
        o.cycles,
        o.from_cycle,
        workload.name(),
        mode.name(),
        o.seed
    );
    report(crash_cycles(kernel, workload, &cfg), |r| println!("{r}"))
}

fn cycles(kernel: &Kernel, o: &Options, mode: Mode, which: Which) -> bool {
    match which {
        Which::Log => cycles_of(kernel, o, mode, &LogWorkload::new(o.records)),
        Which::Heap => cycles_of(kernel, o, mode, &HeapWorkload { ops: o.ops }),
        Which::Tx => cycles_of(kernel, o, mode, &TxWorkload { txs: o.txs }),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(task), Some(o)) = (args.first(), parse(args.get(1..).unwrap_or_default())) else {
        eprintln!("usage: pm-qemu <all|suite|cycles> [--seed S] [--cycles N] [--nvdimms N] [--suite NAME] [--mode direct|adr] [--workload log|heap|tx] [--records N] [--ops N] [--txs N] [--from-cycle K]");
        return ExitCode::FAILURE;
    };
    if !qemu_available() {
        eprintln!("qemu-system-x86_64 not found: apt-get install -y qemu-system-x86");
        return ExitCode::FAILURE;
    }
    println!("$ (cd qemu/kernel && cargo build --release)");
    let Ok(kernel) = Kernel::build().inspect_err(|e| eprintln!("{e}")) else {
        return ExitCode::FAILURE;
    };
    let seed_args = |nvdimms: usize| BootArgs {
        suite: o.suite,
        seed: o.seed,
        nvdimms: Some(nvdimms as u32),
        ..BootArgs::default()
    };
    let ok = match task.as_str() {
        "suite" => suite(&kernel, o.nvdimms, seed_args(o.nvdimms)),
        "cycles" => cycles(
            &kernel,
            &o,
            o.mode.unwrap_or_default(),
            o.workload.unwrap_or(Which::Log),
        ),
        "all" => {
            let mut ok = suite(&kernel, 1, seed_args(1));
            ok &= suite(&kernel, 2, seed_args(2));
            ok &= suite(
                &kernel,
                2,
                BootArgs {
                    suite: Suite::Pmalloc,
                    ..seed_args(2)
                },
            );
            ok &= suite(
                &kernel,
                2,
                BootArgs {
                    suite: Suite::Pmrt,
                    ..seed_args(2)
                },
            );
            ok &= pair(&kernel, 2, o.seed, Suite::Persist, Suite::Verify);
            ok &= pair(&kernel, 1, o.seed, Suite::PoolCreate, Suite::PoolVerify);
            for which in [Which::Log, Which::Heap, Which::Tx] {
                for mode in [Mode::Direct, Mode::Adr] {
                    if o.mode.is_none_or(|m| m == mode) && o.workload.is_none_or(|w| w == which) {
                        ok &= cycles(&kernel, &o, mode, which);
                    }
                }
            }
            ok
        }
        _ => {
            eprintln!("unknown task {task}");
            false
        }
    };
    println!("pm-qemu {task}: {}", if ok { "ok" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
