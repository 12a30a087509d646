use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = prunescope::cli::Cli::parse();
    match prunescope::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = prunescope::error::chain(e.chain().map(|e| e as &(dyn std::error::Error + 'static)));
            eprintln!("error: {text}");
            std::process::ExitCode::FAILURE
        }
    }
}
