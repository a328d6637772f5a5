//! Where an HTTP role listens: the requested address, or loopback only while it is open.

use std::net::{IpAddr, Ipv4Addr};

/// The address to bind: `requested`, unless no tokens are configured (`open`), in which case
/// only 127.0.0.1, with a warning naming `what` is open.
pub fn listen_address(requested: IpAddr, open: bool, what: &str) -> IpAddr {
    if open && !requested.is_loopback() {
        tracing::warn!(
            %requested,
            "GORGON_API_TOKENS is not set, so the {what} is open: binding 127.0.0.1 only"
        );
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        if open {
            tracing::warn!(
                "GORGON_API_TOKENS is not set: the {what} is open to anyone on this machine"
            );
        }
        requested
    }
}
