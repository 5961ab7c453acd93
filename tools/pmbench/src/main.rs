//! `pmbench`: runs the named workloads on our stack and on PMDK, interleaved, and
//! writes the table (`pmbench.md`), the data (`pmbench.json`) and, with `--plot`, a chart
//! (`pmbench.svg`); `pmbench ablation` measures what coalescing buys on our stack
//! (`ablation.{md,json}`, `recovery-vs-pending.svg`). See `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use pmbench::ablation::{self, AblationOptions};
use pmbench::count::{self, CountCache, PmdkCount};
use pmbench::harness::{self, PmdkMode, RunOptions};
use pmbench::ours::Ours;
use pmbench::report::Report;
use pmbench::{Params, WorkloadId};

#[derive(Debug, Parser)]
#[command(
    name = "pmbench",
    about = "Workloads side by side on our stack and on PMDK's libpmemobj",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct Common {
    /// Quick sizes (about 1/100 of the operations), for CI smoke runs.
    #[arg(long)]
    quick: bool,
    /// Folder for the results.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Folder for pool files (tmpfs: memory standing in for pmem).
    #[arg(long, default_value = "/dev/shm")]
    pool_dir: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Workloads to run.
    #[arg(value_enum)]
    workloads: Vec<WorkloadId>,
    /// Run every workload.
    #[arg(long)]
    all: bool,
    /// Rounds per side (interleaved: ours, PMDK, ours eADR, PMDK no-flush, ...).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Also write an SVG bar chart of the throughput ratios.
    #[arg(long)]
    plot: bool,
    /// Do not count PMDK's fences and flushes (no cached counts are used either).
    #[arg(long)]
    no_count: bool,
    /// Operations per counted PMDK run.
    #[arg(long, default_value_t = 2000)]
    count_ops: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Count PMDK's fences, flushed lines and non-temporal lines per operation (native
    /// run under a breakpoint tracer) and refresh the cache the main run reads.
    CountPmdk {
        /// Workloads to count (default: every countable one; w7 has threads and is not).
        #[arg(value_enum)]
        workloads: Vec<WorkloadId>,
        /// Operations per counted run.
        #[arg(long, default_value_t = 2000)]
        ops: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Our stack only: w6 with coalescing vs write-back at every commit, mixed with
    /// count + volume thresholds vs count only, and recovery time against pending
    /// volume with a fitted line (writes ablation.{md,json} and recovery-vs-pending.svg).
    Ablation {
        /// Rounds per configuration and per recovery point (interleaved).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        #[command(flatten)]
        common: Common,
    },
    /// What one fence costs here when it waits for 0 to 6 flushed lines, hot (in the
    /// cache) or cold (random lines of 64 MiB), through our media primitives on a file
    /// in the pool folder (writes fence-cost.md).
    FenceCost {
        /// Samples per line count (interleaved).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Instructions executed per operation on each side (ours with flushes and eADR,
    /// PMDK with and without flushes), counted by running one quick round of each
    /// workload under valgrind's callgrind: the CPU work between fences, free of the
    /// machine's noise (writes instructions.md). Needs valgrind and the pmdk feature.
    Instructions {
        /// Workloads to count (default: w1..w6 and mixed; w7 runs two threads).
        #[arg(value_enum)]
        workloads: Vec<WorkloadId>,
        #[command(flatten)]
        common: Common,
    },
    /// Internal: one PMDK round in this process (run by pmbench itself with PMDK's
    /// environment set before the library loads).
    #[command(name = "__pmdk", hide = true)]
    Pmdk(ChildArgs),
    /// Internal: the crashing child of our recover workload (dies inside the commit).
    #[command(name = "__ours-crash", hide = true)]
    OursCrash(CrashArgs),
}

#[derive(Debug, Args)]
struct CrashArgs {
    #[arg(long)]
    pool: PathBuf,
    #[arg(long)]
    log_bytes: u64,
    #[arg(long)]
    chunk: u64,
    #[arg(long)]
    eadr: bool,
}

#[derive(Debug, Args)]
struct ChildArgs {
    #[arg(value_enum)]
    workload: WorkloadId,
    #[arg(long)]
    pool: PathBuf,
    #[arg(long)]
    quick: bool,
    #[arg(long)]
    ops: Option<u64>,
    #[arg(long)]
    build: bool,
    #[arg(long)]
    marks: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Pmdk(args)) => child(&args),
        Some(Cmd::OursCrash(a)) => {
            match pmbench::ours::recover::crash_child(&a.pool, a.log_bytes, a.chunk, a.eadr) {
                Ok(never) => match never {},
                Err(e) => Err(e.into()),
            }
        }
        Some(Cmd::Ablation { rounds, common }) => run_ablation(rounds, &common),
        Some(Cmd::FenceCost { rounds, common }) => fence_cost(rounds, &common),
        Some(Cmd::Instructions { workloads, common }) => instructions(workloads, &common),
        Some(Cmd::CountPmdk {
            workloads,
            ops,
            common,
        }) => count_pmdk(workloads, ops, &common),
        None => run(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmbench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn instructions(workloads: Vec<WorkloadId>, common: &Common) -> Result<(), Error> {
    use pmbench::instructions as ins;
    let ids: Vec<WorkloadId> = if workloads.is_empty() {
        WorkloadId::ALL
            .into_iter()
            .filter(|&id| ins::countable(id))
            .collect()
    } else {
        workloads
    };
    if let Some(id) = ids.iter().find(|&&id| !ins::countable(id)) {
        return Err(format!("{id} times other units than operations: not counted").into());
    }
    let exe = std::env::current_exe()?;
    let work = common.out.join("instructions");
    let mut rows = Vec::new();
    for id in ids {
        eprintln!("counting {id} under callgrind");
        rows.push((id, ins::count(&exe, id, &work, &common.pool_dir)?));
    }
    let md = ins::markdown(&rows);
    print!("{md}");
    let path = common.out.join("instructions.md");
    std::fs::write(&path, md)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn fence_cost(rounds: u32, common: &Common) -> Result<(), Error> {
    let cost = pmbench::fence_cost::measure(&common.pool_dir, rounds)?;
    let md = cost.markdown(rounds);
    print!("{md}");
    std::fs::create_dir_all(&common.out)?;
    let path = common.out.join("fence-cost.md");
    std::fs::write(&path, md)?;
    println!("\nwrote {}", path.display());
    Ok(())
}

fn run(args: &RunArgs) -> Result<(), Error> {
    let workloads = if args.all {
        WorkloadId::ALL.to_vec()
    } else {
        args.workloads.clone()
    };
    if workloads.is_empty() {
        return Err("name workloads (w1 .. w7, open, recover, mixed) or pass --all".into());
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let c = &args.common;
    let counts = if args.no_count || !cfg!(feature = "pmdk") {
        None
    } else {
        Some(cached_counts(&workloads, args.count_ops, c)?)
    };
    let opts = RunOptions {
        rounds: args.rounds,
        quick: c.quick,
        pool_dir: c.pool_dir.clone(),
    };
    let mut runs = Vec::new();
    for &id in &workloads {
        runs.push(harness::run_workload(id, &opts, &Ours, &mut |line| {
            eprintln!("{line}");
        }));
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = Report::build(
        command,
        args.rounds,
        params(c.quick),
        &runs,
        counts.as_ref().map(|v| (args.count_ops, v.as_slice())),
    );
    println!("{}", report.markdown());
    report.write(&c.out, args.plot)?;
    eprintln!(
        "wrote {}/pmbench.{{json,md{}}}",
        c.out.display(),
        if args.plot { ",svg" } else { "" }
    );
    Ok(())
}

fn run_ablation(rounds: u32, c: &Common) -> Result<(), Error> {
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let opts = AblationOptions {
        rounds,
        quick: c.quick,
        pool_dir: c.pool_dir.clone(),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = ablation::run(command, &opts, &mut |line| eprintln!("{line}"))?;
    println!("{}", result.markdown());
    result.write(&c.out)?;
    eprintln!(
        "wrote {}/ablation.{{json,md}} and {}/recovery-vs-pending.svg",
        c.out.display(),
        c.out.display()
    );
    Ok(())
}

fn params(quick: bool) -> Params {
    if quick {
        Params::quick()
    } else {
        Params::full()
    }
}

fn cache_file(c: &Common) -> PathBuf {
    c.out.join("pmdk-counts.json")
}

/// PMDK's counts for `workloads`: from the cache where it has them, counted (and added
/// to the cache) where not.
fn cached_counts(workloads: &[WorkloadId], ops: u64, c: &Common) -> Result<Vec<PmdkCount>, Error> {
    let key = count::cache_key(ops, c.quick)?;
    let file = cache_file(c);
    let mut cache = count::load_cache(&file, &key).unwrap_or(CountCache {
        key,
        counts: Vec::new(),
    });
    let mut changed = false;
    for &id in workloads.iter().filter(|w| w.countable()) {
        for mode in PmdkMode::ALL {
            if cache
                .counts
                .iter()
                .any(|x| x.workload == id && x.mode == mode)
            {
                continue;
            }
            eprintln!(
                "counting PMDK's persistence instructions: {id} {}",
                mode.name()
            );
            cache
                .counts
                .extend(count::count_one(id, mode, ops, c.quick, &c.pool_dir)?);
            changed = true;
        }
    }
    if changed {
        count::save_cache(&file, &cache)?;
    }
    Ok(cache.counts)
}

fn count_pmdk(workloads: Vec<WorkloadId>, ops: u64, c: &Common) -> Result<(), Error> {
    let workloads: Vec<WorkloadId> = if workloads.is_empty() {
        WorkloadId::ALL
            .into_iter()
            .filter(|w| w.countable())
            .collect()
    } else {
        workloads
    };
    if let Some(w) = workloads.iter().find(|w| !w.countable()) {
        return Err(
            format!("{w} runs two threads; the tracer follows one (count w1 instead)").into(),
        );
    }
    let key = count::cache_key(ops, c.quick)?;
    let file = cache_file(c);
    let mut cache = count::load_cache(&file, &key).unwrap_or(CountCache {
        key,
        counts: Vec::new(),
    });
    println!("| workload | PMDK mode | per | fences | flushed lines | nt lines | instructions executed per unit |");
    println!("|---|---|---|---|---|---|---|");
    for &id in &workloads {
        for mode in PmdkMode::ALL {
            let fresh = count::count_one(id, mode, ops, c.quick, &c.pool_dir)?;
            for x in &fresh {
                #[allow(clippy::cast_precision_loss)] // report arithmetic
                let detail: Vec<String> = x
                    .by_instruction
                    .iter()
                    .map(|(k, v)| format!("{k} {:.2}", *v as f64 / x.units.max(1) as f64))
                    .collect();
                println!(
                    "| {id} {:?} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                    x.metric,
                    mode.name(),
                    x.metric.unit(),
                    x.fences_per_unit(),
                    x.lines_per_unit(),
                    x.nt_lines_per_unit(),
                    detail.join(", ")
                );
            }
            cache
                .counts
                .retain(|x| !(x.workload == id && x.mode == mode));
            cache.counts.extend(fresh);
        }
    }
    count::save_cache(&file, &cache)?;
    eprintln!("wrote {}", file.display());
    Ok(())
}

#[cfg(feature = "pmdk")]
fn child(args: &ChildArgs) -> Result<(), Error> {
    use pmbench::harness::ChildSpec;
    use pmbench::round::RoundResult;
    use pmbench::{pmdk, Job};

    extern "C" fn stop_for_tracer() {
        // SAFETY: raising a signal at ourselves; the tracer resumes us.
        unsafe { libc::raise(libc::SIGSTOP) };
    }

    let spec = ChildSpec {
        workload: args.workload,
        quick: args.quick,
        ops: args.ops,
        pool: args.pool.clone(),
        build: args.build,
        marks: args.marks,
    };
    let p = spec.params();
    let job = Job::build(args.workload, &p);
    let result = if args.build {
        let Job::Open(j) = &job else {
            return Err("--build is for the open workload".into());
        };
        pmdk::build_open(j, &args.pool)?;
        RoundResult {
            timings: Vec::new(),
            counters: None,
            tx: None,
            by_metric: Vec::new(),
        }
    } else {
        let mark: pmdk::Mark = if args.marks {
            Some(stop_for_tracer)
        } else {
            None
        };
        pmdk::run(&job, p.pool_size, &args.pool, mark)?
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

#[cfg(not(feature = "pmdk"))]
fn child(_args: &ChildArgs) -> Result<(), Error> {
    Err("pmdk feature off".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ablation_takes_rounds_and_the_common_options() {
        let cli = Cli::try_parse_from(["pmbench", "ablation", "--quick", "--rounds", "2"]).unwrap();
        let Some(Cmd::Ablation { rounds, common }) = cli.cmd else {
            panic!("{cli:?}")
        };
        assert_eq!(rounds, 2);
        assert!(common.quick);
        assert_eq!(common.out, PathBuf::from("bench-results"));
    }

    #[test]
    fn the_new_workloads_parse_by_name() {
        let cli = Cli::try_parse_from(["pmbench", "w5", "recover", "mixed"]).unwrap();
        assert!(cli.cmd.is_none());
        assert_eq!(
            cli.run.workloads,
            [WorkloadId::W5, WorkloadId::Recover, WorkloadId::Mixed]
        );
    }

    #[test]
    fn the_crash_child_needs_its_pool_and_sizes() {
        let cli = Cli::try_parse_from([
            "pmbench",
            "__ours-crash",
            "--pool",
            "/dev/shm/x.pool",
            "--log-bytes",
            "1048576",
            "--chunk",
            "65536",
        ])
        .unwrap();
        let Some(Cmd::OursCrash(a)) = cli.cmd else {
            panic!("{cli:?}")
        };
        assert_eq!((a.log_bytes, a.chunk, a.eadr), (1 << 20, 1 << 16, false));
        assert!(Cli::try_parse_from(["pmbench", "__ours-crash", "--pool", "p"]).is_err());
    }
}
