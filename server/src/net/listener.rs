//! `SO_REUSEPORT` listeners, one per network core, all on the same port.
//!
//! They are created on the starting thread, before any executor exists, for two reasons: a bind
//! error (port in use, permission) is reported synchronously by `Agent::start`, and port 0 is
//! resolved once, by the first bind, and the other cores then bind the port the kernel chose;
//! binding port 0 on every core would give each core a different port.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel accept queue length per listener.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `count` listeners to `address` (port 0 is resolved by the first); returns them and the
/// address they share.
pub fn bind_reuseport(
    address: SocketAddr,
    count: usize,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let mut listeners = Vec::with_capacity(count);
    let mut bound_address = address;
    for _ in 0..count {
        let listener = bind_one(bound_address)?;
        bound_address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((listeners, bound_address))
}

fn bind_one(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // SO_REUSEADDR lets a restarted agent bind while old connections sit in TIME_WAIT;
    // SO_REUSEPORT lets every core bind the same port and have the kernel balance accepts.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_resolved_once_and_shared() {
        let (listeners, address) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(address.port(), 0);
        assert_eq!(listeners.len(), 3);
        for listener in &listeners {
            assert_eq!(listener.local_addr().unwrap(), address);
        }
        // A client can connect to the shared port.
        std::net::TcpStream::connect(address).unwrap();
    }

    #[test]
    fn a_port_held_without_reuseport_is_an_error() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(bind_reuseport(holder.local_addr().unwrap(), 1).is_err());
    }
}
