//! File descriptors: each connection is one, so the open-file limit bounds how many clients a
//! process can hold. At start the soft limit is raised toward what `max_connections` needs, and
//! a reserve is kept out of the public listener's reach, so that a flood of public connections
//! can never leave the local API (operators' `/healthz` and `/metrics`, publishers) or the link
//! to Redis without a descriptor.

use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for the local listener, Redis and the process's own files (at most a
/// quarter of the limit, when the limit is small).
pub const RESERVE: u64 = 1024;
/// Of the reserve, what is left for Redis, files, epoll and wakers: the local listener may
/// use the rest.
const INTERNAL: u64 = 64;

/// How many connections each listener may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub public: usize,
    pub local: usize,
    /// The open-file limit they were derived from.
    pub nofile: u64,
}

/// Raises the soft open-file limit toward `max_connections` plus the reserve (as far as the
/// hard limit allows) and derives each listener's limit from the result.
pub fn connection_limits(max_connections: usize) -> ConnectionLimits {
    let want = (max_connections as u64).saturating_add(RESERVE);
    let nofile = raise_nofile(want);
    split(max_connections, nofile)
}

/// The limits for an open-file limit of `nofile`.
pub fn split(max_connections: usize, nofile: u64) -> ConnectionLimits {
    let reserve = RESERVE.min(nofile / 4);
    let public_room = nofile.saturating_sub(reserve).max(1);
    let local_room = reserve.saturating_sub(INTERNAL.min(reserve / 2)).max(1);
    ConnectionLimits {
        public: clamp(max_connections, public_room),
        local: clamp(max_connections, local_room),
        nofile,
    }
}

fn clamp(wanted: usize, room: u64) -> usize {
    usize::try_from(room).map_or(wanted, |room| wanted.min(room))
}

/// The soft limit after trying to raise it to `want` (never lowering it).
fn raise_nofile(want: u64) -> u64 {
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = now.maximum.map_or(want, |max| want.min(max));
    let raised = Rlimit {
        current: Some(target),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => target,
        Err(_) => current,
    }
}

/// Warns once per process when the public listener gets fewer connections than asked for.
pub fn warn_if_short(limits: &ConnectionLimits, max_connections: usize) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if limits.public >= max_connections || WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    log::warn!(
        "the open-file limit is {} (the hard limit allows no more): the public listener takes at \
         most {} connections, not max_connections={max_connections}, because {} descriptors are \
         kept for the local API and Redis; raise the hard limit (`ulimit -Hn`, or LimitNOFILE= \
         in a systemd unit) or lower --max-connections to silence this",
        limits.nofile,
        limits.public,
        limits.nofile - limits.public as u64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_listener_leaves_a_reserve() {
        let l = split(100_000, 20_000);
        assert_eq!(l.public, 20_000 - 1024);
        assert_eq!(l.local, 1024 - 64);
        // Plenty of descriptors: the flag decides.
        let l = split(1000, 1_000_000);
        assert_eq!((l.public, l.local), (1000, 960));
        // A tiny limit still keeps a quarter back.
        let l = split(100_000, 256);
        assert_eq!(l.public, 192);
        assert!(l.local >= 1 && l.local < 64);
    }

    #[test]
    fn the_soft_limit_is_raised_not_lowered() {
        let before = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        assert!(raise_nofile(16) >= before);
    }
}
