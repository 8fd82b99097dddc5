use clap::Parser;

fn main() {
    let cli = klaxon::cli::Cli::parse();
    match klaxon::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("klaxon: {e:#}");
            std::process::exit(2);
        }
    }
}
