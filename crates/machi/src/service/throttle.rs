//! Throttling by source: the doors anyone can knock on without being signed
//! in (sign-in, the OAuth2 token endpoint, the public certificate check)
//! count attempts per source address and in total, and refuse with a time
//! to wait once a budget is spent.
//!
//! Three walls, from the outside in:
//! 1. **Per source** (this module, in memory): an address may fail
//!    [`DoorLimits::per_source`] times within [`DoorLimits::source_window`]
//!    at one door, over all accounts together; then every attempt from it
//!    is refused until its oldest counted failure leaves the window.
//! 2. **Global** (this module, in memory): all sources together may fail
//!    [`DoorLimits::global`] times within [`DoorLimits::global_window`];
//!    beyond that, sources that have not proven a correct secret at this
//!    door lately are refused, so a flood cannot keep the password hashing
//!    busy, while staff and systems that signed in from their address
//!    before keep working. Password checks also run at most
//!    [`Limits::hashing`] at a time (each Argon2 check holds ~19 MiB).
//! 3. **Per account and source** (in the database, `login_failures`, see
//!    `service::auth`): five failures for one account from one source lock
//!    that source out of that account for 15 minutes. Another source is
//!    not affected, so a stranger cannot lock anyone out.
//!
//! An attempt is counted when it is admitted, before any secret is checked
//! (parallel guesses cannot slip past), and taken back when the secret
//! proves right. A refused attempt is not counted: the wait it is told is
//! the true one.
//!
//! The counters of walls 1 and 2 live in this process: with several
//! application servers, each has its own budget (an attacker spreading over
//! `n` servers gets `n` budgets; wall 3 is shared through the database).
//! They are lost on restart, which only resets budgets.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// A door that strangers may knock on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// `POST /login`: staff sign-in.
    SignIn,
    /// `POST /oauth/token`: the client credentials grant.
    Token,
    /// `POST /verify`: the public certificate check (j300). Every check
    /// counts (each writes an access-log entry), not only failed ones.
    Verify,
}

/// The budgets of one door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorLimits {
    /// Counted attempts allowed per source within `source_window`.
    pub per_source: usize,
    /// Seconds.
    pub source_window: i64,
    /// Counted attempts allowed from all sources within `global_window`
    /// before unproven sources are refused.
    pub global: usize,
    /// Seconds.
    pub global_window: i64,
}

/// Every budget. See `docs/decisions.md` for why these figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub sign_in: DoorLimits,
    pub token: DoorLimits,
    pub verify: DoorLimits,
    /// Password checks running at once.
    pub hashing: usize,
    /// Seconds a source stays proven after a correct secret at a door.
    pub proven_for: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A shared office address (NAT) with many staff makes a few
            // typos an hour; 20 failures in 15 minutes is far above that
            // and far below a guessing run.
            sign_in: DoorLimits {
                per_source: 20,
                source_window: 15 * 60,
                global: 120,
                global_window: 60,
            },
            // Machines do not mistype: a system failing ten times in 15
            // minutes is misconfigured or guessing.
            token: DoorLimits {
                per_source: 10,
                source_window: 15 * 60,
                global: 120,
                global_window: 60,
            },
            // A person checks a certificate or two; an office checking a
            // pile gets one every two seconds.
            verify: DoorLimits {
                per_source: 30,
                source_window: 60,
                global: 600,
                global_window: 60,
            },
            hashing: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8),
            proven_for: 7 * 24 * 3600,
        }
    }
}

impl Limits {
    pub fn of(&self, door: Door) -> DoorLimits {
        match door {
            Door::SignIn => self.sign_in,
            Door::Token => self.token,
            Door::Verify => self.verify,
        }
    }
}

/// Where a request comes from, as throttling counts it: an IPv4 address,
/// the /64 network of an IPv6 address (one subscriber usually holds a whole
/// /64), or unknown (not over the network: the CLI, tests calling the
/// service directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Unknown,
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl Source {
    pub fn of(addr: Option<IpAddr>) -> Source {
        match addr {
            None => Source::Unknown,
            Some(IpAddr::V4(a)) => Source::V4(a.octets()),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&o[..8]);
                    Source::V6Net(net)
                }
            },
        }
    }

    /// As stored in `login_failures.source` ("" when unknown).
    pub fn key(&self) -> String {
        match self {
            Source::Unknown => String::new(),
            Source::V4(o) => std::net::Ipv4Addr::from(*o).to_string(),
            Source::V6Net(n) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(n);
                format!("{}/64", std::net::Ipv6Addr::from(o))
            }
        }
    }
}

/// An admitted attempt, counted. Hand it to [`Throttle::proven`] when the
/// secret was right; dropped, it stays counted.
#[derive(Debug)]
#[must_use]
pub struct Ticket {
    door: Door,
    source: Source,
    at: i64,
}

/// Why an attempt was refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Whole seconds until an attempt would be admitted (at least 1).
    pub retry_after: u64,
}

#[derive(Default)]
struct State {
    per_source: HashMap<(Door, Source), VecDeque<i64>>,
    global: HashMap<Door, VecDeque<i64>>,
    proven: HashMap<(Door, Source), i64>,
    admitted: u64,
}

/// The in-memory counters of a process (walls 1 and 2).
pub struct Throttle {
    limits: Limits,
    state: Mutex<State>,
    hashing: tokio::sync::Semaphore,
}

const MICROS: i64 = 1_000_000;

/// Seconds from `now` until `oldest + window` (rounded up, at least 1).
fn wait(oldest: i64, window_micros: i64, now: i64) -> u64 {
    let left = oldest + window_micros - now;
    (left.max(1) as u64).div_ceil(MICROS as u64).max(1)
}

/// Forgets what happened at or before `since` (a window of `w` ending now
/// holds what happened after `now - w`).
fn expire(q: &mut VecDeque<i64>, since: i64) {
    while q.front().is_some_and(|t| *t <= since) {
        q.pop_front();
    }
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            state: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(limits.hashing.max(1)),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters
        // inconsistent in a way that matters: keep using them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits and counts an attempt at `door` from `source` at `now`
    /// (microseconds), or refuses it with the time to wait.
    pub fn admit(&self, door: Door, source: Source, now: i64) -> Result<Ticket, Refused> {
        let l = self.limits.of(door);
        let source_since = now - l.source_window * MICROS;
        let global_since = now - l.global_window * MICROS;
        let mut st = self.lock();
        st.admitted += 1;
        if st.admitted.is_multiple_of(1024) {
            self.prune(&mut st, now);
        }
        if let Some(q) = st.per_source.get_mut(&(door, source)) {
            expire(q, source_since);
            if q.len() >= l.per_source {
                let oldest = q.front().copied().unwrap_or(now);
                return Err(Refused {
                    retry_after: wait(oldest, l.source_window * MICROS, now),
                });
            }
        }
        let proven = st
            .proven
            .get(&(door, source))
            .is_some_and(|t| *t >= now - self.limits.proven_for * MICROS);
        let g = st.global.entry(door).or_default();
        expire(g, global_since);
        if !proven && g.len() >= l.global {
            let oldest = g.front().copied().unwrap_or(now);
            return Err(Refused {
                retry_after: wait(oldest, l.global_window * MICROS, now),
            });
        }
        g.push_back(now);
        st.per_source
            .entry((door, source))
            .or_default()
            .push_back(now);
        Ok(Ticket {
            door,
            source,
            at: now,
        })
    }

    /// The attempt proved the right secret: it no longer counts, and its
    /// source passes the global ceiling of this door for a while.
    pub fn proven(&self, ticket: Ticket) {
        let mut st = self.lock();
        let take = |q: &mut VecDeque<i64>| {
            if let Some(i) = q.iter().rposition(|t| *t == ticket.at) {
                q.remove(i);
            }
        };
        if let Some(q) = st.per_source.get_mut(&(ticket.door, ticket.source)) {
            take(q);
        }
        if let Some(q) = st.global.get_mut(&ticket.door) {
            take(q);
        }
        st.proven.insert((ticket.door, ticket.source), ticket.at);
    }

    /// Waits for a turn to check a password (at most [`Limits::hashing`]
    /// at once); the turn ends when the permit is dropped.
    pub async fn hashing_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.hashing.acquire().await.ok()
    }

    /// Drops counters that no longer matter, so memory follows the live
    /// sources only.
    fn prune(&self, st: &mut State, now: i64) {
        let limits = self.limits;
        st.per_source.retain(|(door, _), q| {
            expire(q, now - limits.of(*door).source_window * MICROS);
            !q.is_empty()
        });
        st.proven
            .retain(|_, t| *t >= now - limits.proven_for * MICROS);
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Limits::default())
    }
}

/// "Try again in ..." for a refusal: (Japanese, English).
pub fn try_again(retry_after: u64) -> (String, String) {
    let (ja, en) = if retry_after < 60 {
        (
            format!("{retry_after}秒後"),
            format!("in {retry_after} seconds"),
        )
    } else {
        let m = retry_after.div_ceil(60);
        (
            format!("約{m}分後"),
            format!("in about {m} minute{}", if m == 1 { "" } else { "s" }),
        )
    };
    (
        format!("試行が続いたため、しばらく受け付けられません。{ja}にやり直してください。"),
        format!("too many attempts; try again {en}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        let d = DoorLimits {
            per_source: 3,
            source_window: 60,
            global: 5,
            global_window: 10,
        };
        Limits {
            sign_in: d,
            token: d,
            verify: d,
            hashing: 1,
            proven_for: 3600,
        }
    }

    fn ip(s: &str) -> Source {
        Source::of(Some(s.parse().unwrap()))
    }

    #[test]
    fn a_source_is_refused_after_its_budget_until_the_window_passes() {
        let t = Throttle::new(small());
        let a = ip("192.0.2.1");
        for i in 0..3 {
            let _ = t.admit(Door::SignIn, a, i * MICROS).unwrap();
        }
        assert_eq!(
            t.admit(Door::SignIn, a, 10 * MICROS).unwrap_err(),
            Refused { retry_after: 50 }
        );
        // Another door and another source are not affected.
        let _ = t.admit(Door::Token, a, 10 * MICROS).unwrap();
        let _ = t.admit(Door::SignIn, ip("192.0.2.2"), 10 * MICROS).unwrap();
        // The first failure leaves the window at 60 s.
        let _ = t.admit(Door::SignIn, a, 60 * MICROS).unwrap();
        assert!(t.admit(Door::SignIn, a, 60 * MICROS).is_err());
    }

    #[test]
    fn a_right_secret_is_taken_back_and_proves_the_source() {
        let t = Throttle::new(small());
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            let ticket = t.admit(Door::SignIn, a, 0).unwrap();
            t.proven(ticket);
        }
        // Five strangers fill the global ceiling ...
        for i in 0..5 {
            let _ = t
                .admit(Door::SignIn, ip(&format!("198.51.100.{i}")), MICROS)
                .unwrap();
        }
        let r = t.admit(Door::SignIn, ip("203.0.113.9"), 2 * MICROS);
        assert_eq!(r.unwrap_err(), Refused { retry_after: 9 });
        // ... but the proven source still gets in.
        let _ = t.admit(Door::SignIn, a, 2 * MICROS).unwrap();
        // Ten seconds on, the ceiling is clear again.
        let _ = t
            .admit(Door::SignIn, ip("203.0.113.9"), 12 * MICROS)
            .unwrap();
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8:1:2::1").key(), "2001:db8:1:2::/64");
        assert_eq!(Source::of(None).key(), "");
    }
}
