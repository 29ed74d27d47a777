//! `SO_REUSEPORT` listeners, one per network core, all on the same port.
//!
//! They are created on the starting thread, before any executor exists, for two reasons: a bind
//! error (port in use, permission) is reported synchronously by `Agent::start`, and port 0 is
//! resolved once, by the first bind, and the other cores then bind the port the kernel chose;
//! binding port 0 on every core would give each core a different port.
//!
//! `SO_REUSEPORT` would also let a second process of the same user join the port (a second agent
//! started with the same `listen` address would silently take half of the first one's new
//! connections), so a fixed port is first probed with a socket that does not share: if anything
//! listens there already, the bind fails with `AddrInUse` as Kafka's would — after waiting up to
//! [`LISTEN_PROBE_WAIT`] for it to be released, which a predecessor killed with SIGKILL needs. The
//! probe is closed before the shared sockets bind; two agents starting within that instant are not
//! told apart.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel accept queue length per listener.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `count` listeners to `address` (port 0 is resolved by the first); returns them and the
/// address they share.
pub fn bind_reuseport(
    address: SocketAddr,
    count: usize,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    bind_reuseport_within(address, count, LISTEN_PROBE_WAIT)
}

/// How long a start waits for a fixed port to be released before it reports it in use. An
/// agent killed with SIGKILL keeps its listening sockets a moment after it is reaped (its
/// io_uring rings are torn down by the kernel after the process, and they hold the sockets
/// until then): a restart on the same port right after the kill would otherwise fail.
pub const LISTEN_PROBE_WAIT: Duration = Duration::from_secs(5);

/// [`bind_reuseport`], waiting up to `wait` for a fixed port in use to be released.
pub fn bind_reuseport_within(
    address: SocketAddr,
    count: usize,
    wait: Duration,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    if address.port() != 0 {
        let started = Instant::now();
        loop {
            match probe_unshared(address) {
                Ok(()) => break,
                Err(error)
                    if error.kind() == io::ErrorKind::AddrInUse && started.elapsed() < wait =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => return Err(error),
            }
        }
    }
    let mut listeners = Vec::with_capacity(count);
    let mut bound_address = address;
    for _ in 0..count {
        let listener = bind_one(bound_address)?;
        bound_address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((listeners, bound_address))
}

/// Binds and listens on `address` without `SO_REUSEPORT`, then closes: fails when another
/// socket (of this process or any other) listens on it, shared or not.
fn probe_unshared(address: SocketAddr) -> io::Result<()> {
    let socket = new_socket(address, false)?;
    socket.bind(&address.into()).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!(
                "{address} is already in use (another agent or broker listens there?): {error}"
            ),
        )
    })?;
    socket.listen(1)?;
    Ok(())
}

fn bind_one(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(address, true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A TCP socket for `address` with `SO_REUSEADDR` (a restarted agent binds while old
/// connections sit in TIME_WAIT) and, when `shared`, `SO_REUSEPORT` (every core binds the same
/// port and the kernel balances accepts).
fn new_socket(address: SocketAddr, shared: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    Ok(socket)
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
        let address = holder.local_addr().unwrap();
        assert!(bind_reuseport_within(address, 1, Duration::from_millis(100)).is_err());
    }

    /// A port released while the start waits (a killed predecessor's sockets going away) is
    /// bound: the probe tries again until the holder is gone.
    #[test]
    fn a_port_released_during_the_wait_is_bound() {
        let (holder, address) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let (released, release) = std::sync::mpsc::channel::<()>();
        let releaser = std::thread::spawn(move || {
            // Dropped once the waiting start has failed its first probe.
            release.recv().unwrap();
            drop(holder);
        });
        assert_eq!(
            probe_unshared(address).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        released.send(()).unwrap();
        let (listeners, bound) =
            bind_reuseport_within(address, 2, Duration::from_secs(30)).unwrap();
        assert_eq!((listeners.len(), bound), (2, address));
        releaser.join().unwrap();
    }

    #[test]
    fn a_port_another_agent_shares_is_an_error() {
        // The first agent's listeners share their port with SO_REUSEPORT; a second agent (same
        // user, same address) must not join them.
        let (_first, address) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let error = bind_reuseport_within(address, 2, Duration::from_millis(100)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(error.to_string().contains("already in use"), "{error}");
    }

    #[test]
    fn a_fixed_port_nobody_holds_is_bound_by_every_core() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The probe's socket is closed before the shared ones bind.
        let (listeners, address) = bind_reuseport(free, 2).unwrap();
        assert_eq!(address, free);
        assert_eq!(listeners.len(), 2);
    }
}
