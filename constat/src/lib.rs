//! constat's command line, as a library: see [`cli`].

pub mod cli;

/// The clap command of `constat`.
pub fn command() -> clap::Command {
    <cli::Args as clap::CommandFactory>::command()
}
