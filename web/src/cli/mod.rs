//! Command-line interface: argument definitions and dispatch.
//!
//! `ignis tsdb …` mirrors `promtool tsdb …` of Prometheus 2.42 byte for byte where promtool's
//! output is deterministic:
//!
//! * `create-blocks-from openmetrics <file> [<outdir>]` — backfill blocks ([`backfill`]);
//! * `dump [<dir>]` — print every sample ([`dump`]);
//! * `list [<dir>]` — one row per block ([`list`]);
//! * `analyze [<dir>] [<block id>]` — cardinality report ([`analyze`]).
//!
//! `ignis check config <files>` and `ignis check rules <files>` mirror `promtool check …`
//! ([`crate::config::check_config`], [`crate::rules::check_rule_files`]).
//!
//! Errors are printed to stderr and the process exits with status 1.

pub mod analyze;
pub mod backfill;
pub mod blocks;
pub mod dump;
pub mod gotime;
pub mod list;
pub mod storage;
pub mod tabwriter;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The `ignis` command line.
#[derive(Debug, Parser)]
#[command(
    name = "ignis",
    version,
    about = "Prometheus-compatible time-series database"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; the server when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server flags, when no subcommand is given (`ignis --web.listen-address=…`).
    #[command(flatten)]
    pub server: crate::server::ServerArgs,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Server(Box<crate::server::ServerArgs>),
    /// Tools for TSDB data directories and blocks (as `promtool tsdb`).
    #[command(subcommand)]
    Tsdb(TsdbCommand),
    /// Check configuration and rule files (as `promtool check`).
    #[command(subcommand)]
    Check(CheckCommand),
}

/// `ignis check …`
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check that configuration files are valid (and the rule files they list).
    Config {
        /// The configuration files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check that rule files are valid.
    Rules {
        /// The rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Prints a check report and returns its exit status.
fn print_check(r: crate::config::CheckReport) -> i32 {
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    if r.ok {
        0
    } else {
        1
    }
}

/// `ignis tsdb …`
#[derive(Debug, Subcommand)]
pub enum TsdbCommand {
    /// Create blocks of data from an input file.
    #[command(name = "create-blocks-from", subcommand)]
    CreateBlocksFrom(CreateBlocksFrom),
    /// Dump samples from a TSDB.
    Dump(DumpArgs),
    /// List the blocks of a TSDB.
    List(ListArgs),
    /// Analyze churn, label pair cardinality and compaction efficiency of a block.
    Analyze(AnalyzeArgs),
}

/// `ignis tsdb create-blocks-from …`
#[derive(Debug, Subcommand)]
pub enum CreateBlocksFrom {
    /// Import samples from OpenMetrics input and produce TSDB blocks.
    Openmetrics(OpenMetricsArgs),
}

/// Arguments of `create-blocks-from openmetrics`.
#[derive(Debug, Args)]
pub struct OpenMetricsArgs {
    /// OpenMetrics file to read samples from.
    pub input: PathBuf,
    /// Output directory for generated blocks.
    #[arg(default_value = "data/")]
    pub output: PathBuf,
    /// Print human readable values.
    #[arg(short = 'r', long = "human-readable")]
    pub human_readable: bool,
    /// Do not print created blocks.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Maximum duration created blocks may span (Prometheus duration, e.g. 2h, 1d).
    #[arg(long = "max-block-duration", default_value = "2h", value_parser = gotime::parse_prom_duration_ms)]
    pub max_block_duration: i64,
}

/// Arguments of `tsdb dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Database path.
    #[arg(default_value = "data/")]
    pub db_path: PathBuf,
    /// Minimum timestamp to dump (ms).
    #[arg(long = "min-time", default_value_t = i64::MIN, allow_negative_numbers = true)]
    pub min_time: i64,
    /// Maximum timestamp to dump (ms).
    #[arg(long = "max-time", default_value_t = i64::MAX, allow_negative_numbers = true)]
    pub max_time: i64,
    /// Series selector.
    #[arg(long = "match", default_value = "{__name__=~'(?s:.*)'}")]
    pub matcher: String,
}

/// Arguments of `tsdb list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Database path.
    #[arg(default_value = "data/")]
    pub db_path: PathBuf,
    /// Print human readable values.
    #[arg(short = 'r', long = "human-readable")]
    pub human_readable: bool,
}

/// Arguments of `tsdb analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Database path.
    #[arg(default_value = "data/")]
    pub db_path: PathBuf,
    /// Block to analyze (default is the last block).
    pub block_id: Option<String>,
    /// How many items to show in each list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Run extended analysis (chunk fullness).
    #[arg(long)]
    pub extended: bool,
}

/// Runs the parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let res = match cli.command.unwrap_or(Command::Server(Box::new(cli.server))) {
        Command::Server(args) => return crate::server::main_entry(*args),
        Command::Tsdb(TsdbCommand::CreateBlocksFrom(CreateBlocksFrom::Openmetrics(a))) => {
            backfill::run(&a)
        }
        Command::Check(CheckCommand::Config { files }) => {
            return print_check(crate::config::check_config(&files))
        }
        Command::Check(CheckCommand::Rules { files }) => {
            return print_check(crate::rules::check_rule_files(&files))
        }
        Command::Tsdb(TsdbCommand::Dump(a)) => dump::run(&a),
        Command::Tsdb(TsdbCommand::List(a)) => list::run(&a),
        Command::Tsdb(TsdbCommand::Analyze(a)) => analyze::run(&a),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            1
        }
    }
}

/// `outer: inner: …` for an error and its causes, skipping a cause whose text the previous
/// message already ends with (errors that print their source themselves).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.ends_with(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_skips_repeated_causes() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(tsdb::Error::io("/x", io)).context("open data directory /x");
        assert_eq!(
            error_chain(&e),
            "open data directory /x: /x: entity not found"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
