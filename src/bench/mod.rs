//! The load generator behind `loopchat-bench` and `cargo bench`.
//!
//! One thread drives every client connection around one `mio::Poll`, like
//! the server it measures, so that thousands of clients cost little and the
//! bench is not the bottleneck. The modules split by what they own:
//!
//! - [`cli`]: the command line and [`Config`],
//! - [`dialect`]: the protocols as the bench needs them (Budget Chat, IRC,
//!   both over WebSocket, Redis pub/sub),
//! - [`payload`]: the text of a message (sender, sequence, intended time),
//! - [`tracker`]: loss, duplicate and reordering accounting,
//! - [`driver`]: the poll loop and the workloads (fanout, idle, churn, storm),
//! - [`net`]: non-blocking connects and the precise timer,
//! - [`stats`]: latency histograms, [`proc_stats`]: /proc sampling (the
//!   server's RSS, by phase),
//! - [`report`]: the table and the JSON object,
//! - [`workers`]: `--workers`, several bench processes merged into one
//!   report,
//! - [`targets`]: several servers at once (`ADDR,ADDR`), which client goes
//!   where,
//! - [`baseline`]: the thread-per-client server the benches compare with.

pub mod baseline;
pub mod cli;
pub mod dialect;
pub mod driver;
pub mod net;
pub mod payload;
pub mod proc_stats;
pub mod report;
pub mod stats;
pub mod targets;
pub mod tracker;
pub mod workers;

pub use cli::{Config, Workload};
pub use driver::run;
pub use report::Report;

/// The `loopchat-bench` program: parses `args` (without the program name),
/// runs, prints, and returns the exit status (0 clean, 1 not clean or an
/// error, 2 bad usage).
pub fn main_with_args(args: &[String]) -> i32 {
    let cfg = match cli::parse(args) {
        Ok(cli::Parsed::Run(c)) => c,
        Ok(cli::Parsed::Help(text)) => {
            print!("{text}");
            return 0;
        }
        Err(e) => {
            eprintln!("loopchat-bench: {e} (try --help)");
            return 2;
        }
    };
    let result = if cfg.workers > 1 {
        workers::run_parent(&cfg, args)
    } else {
        run(&cfg)
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loopchat-bench: {e}");
            return 1;
        }
    };
    if cfg.worker.is_some() {
        // A worker's one line for its parent (src/bench/workers.rs).
        println!("{}", workers::result_line(&report));
        return 0;
    }
    if let Some(path) = &cfg.hist_out {
        let mut text = String::new();
        if let Some(h) = &report.hists {
            h.latency.write_hgrm(&mut text);
        } else {
            stats::LatencyHist::new().write_hgrm(&mut text);
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("loopchat-bench: --hist-out {}: {e}", path.display());
            return 1;
        }
    }
    if cfg.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    if report.is_clean() || cfg.allow_loss {
        0
    } else {
        1
    }
}
