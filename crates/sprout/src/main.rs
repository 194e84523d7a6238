//! `sprout`: the control plane (`sprout server`) and the CLI (every other verb), one binary.

mod handover;
mod loops;
mod server;

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sprout",
    version,
    about = "Sprout: a small self-hosted PaaS. Push a bundle, get a load-balanced environment on Docker."
)]
struct Cli {
    #[command(flatten)]
    global: sprout_cli::GlobalArgs,
    #[command(subcommand)]
    command: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    /// Run the control plane: API and dashboard, balancer, and the control loops
    Server(server::ServerArgs),
    #[command(flatten)]
    Client(sprout_cli::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Top::Server(args) => match runtime.block_on(server::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Top::Client(command) => match runtime.block_on(sprout_cli::run(cli.global, command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
