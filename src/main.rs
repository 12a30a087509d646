use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = prunescope::cli::Cli::parse();
    match prunescope::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
