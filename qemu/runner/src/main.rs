//! `pm-qemu`: build the test kernel and run its suites and crash cycles under QEMU.
//!
//! ```text
//! pm-qemu all [--seed S] [--cycles N]   suites (1 and 2 NVDIMMs), persistence, cycles
//! pm-qemu suite [--nvdimms N] [--suite NAME] [--seed S]
//! pm-qemu cycles [--mode direct|adr] [--seed S] [--cycles N] [--records N]
//! ```
//!
//! Every QEMU command is printed; seeds are printed so a failure replays.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use pm_qemu_proto::{BootArgs, Mode, Suite};
use pm_qemu_runner::{
    crash_cycles, qemu_available, run_suite, CycleConfig, Images, Kernel, LogWorkload, IMAGE_SIZE,
};

/// Command-line options (all optional).
#[derive(Debug)]
struct Options {
    seed: u64,
    cycles: u32,
    nvdimms: usize,
    suite: Suite,
    mode: Option<Mode>,
    records: u32,
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
        records: 4096,
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

/// Boot 1 persists a seeded pattern, boot 2 on the same images finds it.
fn persistence(kernel: &Kernel, seed: u64) -> bool {
    let Ok(images) = Images::create(2, IMAGE_SIZE) else {
        return false;
    };
    let args = |suite| BootArgs {
        suite,
        seed,
        nvdimms: Some(2),
        ..BootArgs::default()
    };
    suite_on(kernel, &images, args(Suite::Persist))
        && suite_on(kernel, &images, args(Suite::Verify))
}

fn cycles(kernel: &Kernel, o: &Options, mode: Mode) -> bool {
    let cfg = CycleConfig::new(o.seed, o.cycles, mode);
    println!(
        "crash cycles: workload log, mode {}, seed {:#x}, {} cycles",
        mode.name(),
        o.seed,
        o.cycles
    );
    let workload = LogWorkload::new(o.records);
    report(crash_cycles(kernel, &workload, &cfg), |r| println!("{r}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(task), Some(o)) = (args.first(), parse(args.get(1..).unwrap_or_default())) else {
        eprintln!("usage: pm-qemu <all|suite|cycles> [--seed S] [--cycles N] [--nvdimms N] [--suite NAME] [--mode direct|adr] [--records N]");
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
        "cycles" => cycles(&kernel, &o, o.mode.unwrap_or_default()),
        "all" => {
            let mut ok = suite(&kernel, 1, seed_args(1));
            ok &= suite(&kernel, 2, seed_args(2));
            ok &= persistence(&kernel, o.seed);
            for mode in [Mode::Direct, Mode::Adr] {
                if o.mode.is_none_or(|m| m == mode) {
                    ok &= cycles(&kernel, &o, mode);
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
