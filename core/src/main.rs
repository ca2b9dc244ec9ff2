//! The `verge` command: see `verge --help`.

fn main() -> std::process::ExitCode {
    verge_core::cli::run()
}
