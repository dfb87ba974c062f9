//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

use crate::HarnessError;

/// Asks the kernel for a port that is free on 127.0.0.1 right now.
///
/// The port is released before it is returned, so another process may take
/// it before the caller binds it; callers that start servers retry with a new
/// port when the server reports the address in use.
///
/// # Errors
///
/// [`HarnessError::Io`] when no socket can be bound at all.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(HarnessError::io("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(HarnessError::io("reading the bound address"))?
        .port();
    Ok(port)
}
