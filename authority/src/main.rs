//! `token-authority`: the server (`serve`) and the admin CLI.

/// mimalloc instead of glibc's malloc: a rotation's many small, short-lived
/// allocations spent 12 % of the authority's CPU in glibc's allocator
/// (bench README, "The allocator").
#[global_allocator]
static ALLOCATOR: token_authority::Allocator = token_authority::Allocator;

fn main() -> std::process::ExitCode {
    token_authority::cli::main()
}
