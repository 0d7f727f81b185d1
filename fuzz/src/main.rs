//! `dynpage-fuzz`: runs the harnesses for a time, each in a worker process of its own so that a
//! crash (a stack overflow, an abort, a case that never ends) is caught and located too.
//!
//! ```text
//! dynpage-fuzz [--minutes M | --seconds S] [--seed N] [--only a,b]   run every harness (default 1 minute)
//! dynpage-fuzz --repro HARNESS CASE_SEED                            replay one case, verbosely
//! dynpage-fuzz --list                                                the harnesses
//! ```
//!
//! The time is split evenly over the harnesses. Each prints its cases per minute, what its
//! cases exercised, and on a failure the case's seed, the generated input and the command that
//! replays it; the exit status is then 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynpage_fuzz::driver::{install_panic_hook, run_case, run_harness, Budget, Counts, Outcome};
use dynpage_fuzz::{harness, HARNESSES};

fn usage() -> ExitCode {
    eprintln!(
        "usage: dynpage-fuzz [--minutes M | --seconds S] [--seed N] [--only a,b]\n       \
         dynpage-fuzz --repro HARNESS CASE_SEED\n       dynpage-fuzz --list"
    );
    ExitCode::from(2)
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

struct Args {
    seconds: f64,
    seed: Option<u64>,
    only: Vec<String>,
    worker: Option<String>,
    from: u64,
    iterations: Option<u64>,
    verbose: bool,
    repro: Option<(String, u64)>,
    list: bool,
}

fn parse_args() -> Option<Args> {
    let mut a = Args {
        seconds: 60.0,
        seed: None,
        only: Vec::new(),
        worker: None,
        from: 0,
        iterations: None,
        verbose: false,
        repro: None,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--minutes" => a.seconds = it.next()?.parse::<f64>().ok()? * 60.0,
            "--seconds" => a.seconds = it.next()?.parse().ok()?,
            "--seed" => a.seed = Some(parse_u64(&it.next()?)?),
            "--only" => a.only = it.next()?.split(',').map(str::to_string).collect(),
            "--worker" => a.worker = Some(it.next()?),
            "--from" => a.from = parse_u64(&it.next()?)?,
            "--iterations" => a.iterations = Some(parse_u64(&it.next()?)?),
            "--verbose" => a.verbose = true,
            "--repro" => {
                let name = it.next()?;
                let seed = parse_u64(&it.next()?)?;
                a.repro = Some((name, seed));
            }
            "--list" => a.list = true,
            _ => return None,
        }
    }
    Some(a)
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        return usage();
    };
    if args.list {
        for h in HARNESSES {
            println!("{:10} {}", h.name, h.about);
        }
        return ExitCode::SUCCESS;
    }
    if let Some((name, seed)) = &args.repro {
        return repro(name, *seed);
    }
    if let Some(name) = &args.worker {
        return worker(name, &args);
    }
    supervise(&args)
}

/// Replays one case verbosely.
fn repro(name: &str, seed: u64) -> ExitCode {
    let Some(h) = harness(name) else {
        eprintln!("no harness {name:?}");
        return ExitCode::from(2);
    };
    install_panic_hook();
    eprintln!("{name} case seed {seed:#018x}:");
    let mut counts = Counts::new();
    match run_case(h, seed, true, &mut counts) {
        Ok(()) => {
            eprintln!("passes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILS: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one harness in this process; reports on stdout, one line each: `progress I`,
/// `count NAME N`, `done ITERATIONS`, or `fail INDEX SEED MESSAGE` (message escaped).
fn worker(name: &str, args: &Args) -> ExitCode {
    let Some(h) = harness(name) else {
        eprintln!("no harness {name:?}");
        return ExitCode::from(2);
    };
    install_panic_hook();
    let budget = match args.iterations {
        Some(n) => Budget::Iterations(n),
        None => Budget::Until(Instant::now() + Duration::from_secs_f64(args.seconds)),
    };
    let seed = args.seed.unwrap_or(0);
    let stdout = std::io::stdout();
    let mut progress = |i: u64| {
        let mut out = stdout.lock();
        let _ = writeln!(out, "progress {i}");
        let _ = out.flush();
    };
    let outcome = run_harness(h, seed, args.from, budget, args.verbose, &mut progress);
    let mut out = stdout.lock();
    for (k, n) in &outcome.counts {
        let _ = writeln!(out, "count {n} {k}");
    }
    let _ = writeln!(out, "done {}", outcome.iterations);
    match outcome.failure {
        None => ExitCode::SUCCESS,
        Some(f) => {
            let _ = writeln!(
                out,
                "fail {} {:#018x} {}",
                f.index,
                f.case_seed,
                f.message.escape_debug()
            );
            ExitCode::FAILURE
        }
    }
}

/// What a worker reported.
#[derive(Default)]
struct Report {
    outcome: Outcome,
    last_progress: u64,
    fail_line: Option<String>,
    status: Option<std::process::ExitStatus>,
    killed: bool,
}

/// Runs `cmd`, reading its report, killing it after `limit`.
fn run_worker(mut cmd: Command, limit: Duration) -> std::io::Result<(Report, String)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        // Keep the last 64 KiB of stderr: a verbose replay prints every case.
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 128 * 1024 {
                tail.drain(..tail.len() - 64 * 1024);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    let started = Instant::now();
    let mut report = Report::default();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let mut parts = line.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("progress"), Some(i), None) => {
                        report.last_progress = i.parse().unwrap_or(report.last_progress)
                    }
                    (Some("count"), Some(n), Some(k)) => {
                        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
                        report.outcome.counts.insert(k, n.parse().unwrap_or(0));
                    }
                    (Some("done"), Some(n), None) => {
                        report.outcome.iterations = n.parse().unwrap_or(0)
                    }
                    (Some("fail"), _, _) => report.fail_line = Some(line),
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() > limit && !report.killed {
                    let _ = child.kill();
                    report.killed = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    report.status = Some(child.wait()?);
    let _ = reader.join();
    let tail = err_reader.join().unwrap_or_default();
    Ok((report, tail))
}

fn worker_command(name: &str, seed: u64) -> Command {
    let exe = std::env::current_exe().expect("the fuzzer's own path");
    let mut cmd = Command::new(exe);
    cmd.args(["--worker", name, "--seed", &seed.to_string()]);
    cmd
}

fn supervise(args: &Args) -> ExitCode {
    let selected: Vec<_> = HARNESSES
        .iter()
        .filter(|h| args.only.is_empty() || args.only.iter().any(|o| o == h.name))
        .collect();
    if selected.is_empty() {
        eprintln!("no harness selected; --list names them");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        dynpage_fuzz::rng::mix(t ^ u64::from(std::process::id()))
    });
    let share = args.seconds / selected.len() as f64;
    println!(
        "dynpage-fuzz: seed {seed:#018x}, {} harnesses, {share:.1} s each (repeat with --seed {seed:#018x})",
        selected.len()
    );
    let mut failed = 0;
    for h in selected {
        let started = Instant::now();
        let mut cmd = worker_command(h.name, seed);
        cmd.args(["--seconds", &share.to_string()]);
        // A case that does not end within a minute past the share is a hang.
        let limit = Duration::from_secs_f64(share + 60.0);
        let (report, tail) = match run_worker(cmd, limit) {
            Ok(r) => r,
            Err(e) => {
                println!("{}: cannot start a worker: {e}", h.name);
                failed += 1;
                continue;
            }
        };
        let secs = started.elapsed().as_secs_f64();
        let n = report.outcome.iterations;
        let ok = report.status.is_some_and(|s| s.success());
        println!(
            "{:9} {n:>10} cases in {secs:6.1} s = {:>9.0} cases/min  {}",
            h.name,
            n as f64 / secs * 60.0,
            if ok { "ok" } else { "FAILED" }
        );
        for (k, v) in &report.outcome.counts {
            println!("{:9}   {v:>10}  {k}", "");
        }
        if ok {
            continue;
        }
        failed += 1;
        if let Some(line) = &report.fail_line {
            // fail INDEX SEED MESSAGE
            let mut parts = line.splitn(4, ' ');
            let (_, index, case_seed, message) =
                (parts.next(), parts.next(), parts.next(), parts.next());
            let case_seed = case_seed.unwrap_or("?");
            println!(
                "{}: case {} (seed {case_seed}) fails: {}",
                h.name,
                index.unwrap_or("?"),
                message.unwrap_or("?")
            );
            print_repro(h.name, case_seed);
            // The case's input, from a verbose replay.
            if let Some(s) = case_seed
                .strip_prefix("0x")
                .and_then(|x| u64::from_str_radix(x, 16).ok())
            {
                let exe = std::env::current_exe().expect("the fuzzer's own path");
                if let Ok(out) = Command::new(exe)
                    .args(["--repro", h.name, &format!("{s:#x}")])
                    .output()
                {
                    print!("{}", String::from_utf8_lossy(&out.stderr));
                }
            }
        } else {
            // A crash or a hang: replay from the last progress mark, printing every case.
            let status = report.status.map(|s| s.to_string()).unwrap_or_default();
            println!(
                "{}: the worker {} ({status}) after case {}; its stderr ends with:\n{}",
                h.name,
                if report.killed {
                    "hung and was killed"
                } else {
                    "crashed"
                },
                report.last_progress,
                last_lines(&tail, 10)
            );
            let mut cmd = worker_command(h.name, seed);
            cmd.args(["--from", &report.last_progress.to_string(), "--verbose"]);
            cmd.args(["--iterations", &(n + 1_000_000).to_string()]);
            println!(
                "{}: replaying from case {} to find it...",
                h.name, report.last_progress
            );
            match run_worker(cmd, Duration::from_secs(120)) {
                Ok((_, tail)) => match tail.rfind("\ncase ").or_else(|| tail.find("case ")) {
                    Some(at) => {
                        let case = tail[at..].trim_start_matches('\n');
                        let seed_word = case
                            .lines()
                            .next()
                            .and_then(|l| l.split(' ').nth(3))
                            .unwrap_or("?")
                            .to_string();
                        println!(
                            "{}: the case it stopped at:\n{}",
                            h.name,
                            last_lines(case, 60)
                        );
                        print_repro(h.name, &seed_word);
                    }
                    None => println!(
                        "{}: the replay did not crash:\n{}",
                        h.name,
                        last_lines(&tail, 20)
                    ),
                },
                Err(e) => println!("{}: cannot replay: {e}", h.name),
            }
        }
    }
    if failed > 0 {
        println!("dynpage-fuzz: {failed} harness(es) FAILED (seed {seed:#018x})");
        ExitCode::FAILURE
    } else {
        println!("dynpage-fuzz: all passed (seed {seed:#018x})");
        ExitCode::SUCCESS
    }
}

fn print_repro(name: &str, case_seed: &str) {
    println!("reproduce: cargo run --profile fuzz -p dynpage-fuzz -- --repro {name} {case_seed}");
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
