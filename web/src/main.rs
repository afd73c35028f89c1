//! The `ignis` binary: a Prometheus-compatible server and its command-line tools.

mod api;
mod federate;
mod remote;
mod server;

use clap::{Parser, Subcommand};

/// ignis: a Prometheus-compatible time-series database.
#[derive(Parser)]
#[command(name = "ignis", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: server::ServerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Server(server::ServerArgs),
}

fn main() {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Server(a)) => a,
        None => cli.server,
    };
    std::process::exit(server::main_entry(args));
}
