//! constat's command line, as a library: see [`cli`].

pub mod cli;

/// The clap command of `constat`, with `constat query` (which the binary dispatches itself,
/// before the report's options are parsed) as a subcommand for the man page and completions.
pub fn command() -> clap::Command {
    let query = <cli::QueryArgs as clap::CommandFactory>::command().name("query");
    <cli::Args as clap::CommandFactory>::command().subcommand(query)
}
