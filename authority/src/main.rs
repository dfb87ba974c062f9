//! `token-authority`: the server (`serve`) and the admin CLI.

fn main() -> std::process::ExitCode {
    token_authority::cli::main()
}
