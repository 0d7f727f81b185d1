//! dynpagectl: publishes, schedules, previews and rolls back dynpage pages and templates.
//! Exit status: 0 success, 1 failure (one-line reason), 2 bad usage.

mod args;
mod check;
mod commands;
mod context;
mod history;
mod input;
mod layout_check;
mod preview;
mod put;
mod release;
mod topology;
mod when;

use args::{Args, Usage};
use context::Failure;

const USAGE: &str = "\
usage: dynpagectl [--redis <url>] [--prefix <prefix>] <command> ...

commands:
  template put <name> <file> [--at <time>] [--predeploy | --gray]
  page put <key> --data <file> (--template <name>[@<version>] | --template-file <file>)
           [--at <time>] [--predeploy | --gray]
  data put <redis key> <file>
  history (<page key> | --template <name>)
  rollback (<page key> | --template <name>) [--to <version>]
  rollback clear (<page key> | --template <name>)
  render (--template-file <file> | --template <name>) --data <file>
  promote (<page key> | --template <name>) [--predeploy | --gray]
  gray set (<page key> | --template <name>) <percent>
  gray off (<page key> | --template <name>)
  prune (<page key> | --template <name>) --keep <n>
  republish --template <name> [--predeploy]
  check [--json]

options:
  --redis <url>     Redis to write to (env DYNPAGE_REDIS, default redis://127.0.0.1:6379)
  --prefix <p>      key prefix (default dynpage:)
  <time>            RFC 3339 (2026-11-21T10:00:00Z) or +<duration> (+10m, +1h30m, +90s)
  --help            this text, or a command's own with `dynpagectl <command> --help`

environment:
  DYNPAGE_RENDER_MAX_SIZE  the output bound pages are checked against: the module's
                    dynpage_render_max_size (default 4m)";

fn main() {
    std::process::exit(run(std::env::args().skip(1)));
}

fn run(argv: impl Iterator<Item = String>) -> i32 {
    let args = match Args::parse(argv) {
        Ok(a) => a,
        Err(Usage(m)) => {
            eprintln!("dynpagectl: {m}\n(see dynpagectl --help)");
            return 2;
        }
    };
    if args.positional.is_empty() {
        if args.flag("help") {
            println!("{USAGE}");
            return 0;
        }
        eprintln!("{USAGE}");
        return 2;
    }
    if args.flag("help") {
        println!("{}", commands::help(&args.positional));
        return 0;
    }
    match commands::dispatch(&args) {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => {
            eprintln!("dynpagectl: {m}\n(see dynpagectl --help)");
            2
        }
        Err(Failure::Fail(m)) => {
            eprintln!("dynpagectl: {}", m.replace('\n', " "));
            1
        }
    }
}
