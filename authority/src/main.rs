//! The token authority binary (built in the next step).

fn main() {}
