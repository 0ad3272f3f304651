//! ipclog's command line, as a library so that the man pages and shell completions
//! (`xtask`) are generated from the very definition the binary parses.

pub mod cli;

/// The clap command of `ipclog` (and of `ipc`, the same binary).
pub fn command() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}
