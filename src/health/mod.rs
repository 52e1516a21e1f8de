//! Health of probe targets: the per-target state machine with consecutive rise/fall
//! thresholds. Pure and synchronous: results and `now` go in, transitions come out. Running
//! probes is [`probe`]'s job; choosing an alias's leader is [`leader`]'s; scheduling probes and
//! publishing results is the caller's.
//!
//! A new target starts [`State::Unknown`] and is never treated as up until `rise` probes in a
//! row pass (STYLE habit 11: fail closed).

pub mod leader;
pub mod monitor;
pub mod probe;

use tokio::time::Instant;

use probe::ProbeResult;

/// What the probes say about one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet enough results either way. An alias never routes to an Unknown master; a
    /// service pool does route to an Unknown backend (the scheduler already vouches for it,
    /// and waiting for `rise` probes would starve every new task), but never to a Down one.
    Unknown,
    Up,
    Down,
}

/// A change of [`State`], returned by [`Health::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// The health of one target.
#[derive(Debug, Clone)]
pub struct Health {
    state: State,
    /// Passing probes in a row (0 after a failure).
    successes: u32,
    /// Failing probes in a row (0 after a success).
    failures: u32,
    /// Passes in a row that make a not-up target Up; at least 1.
    rise: u32,
    /// Failures in a row that make a not-down target Down; at least 1.
    fall: u32,
    /// The latest probe result, for /debug/routes.
    last: Option<ProbeResult>,
    /// When `state` last changed (or the target was first seen).
    changed_at: Instant,
}

// === impl State ===

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Health ===

impl Health {
    /// A new target: Unknown. Thresholds of 0 are taken as 1.
    pub fn new(rise: u32, fall: u32, now: Instant) -> Health {
        Health {
            state: State::Unknown,
            successes: 0,
            failures: 0,
            rise: rise.max(1),
            fall: fall.max(1),
            last: None,
            changed_at: now,
        }
    }

    /// Counts one probe outcome; returns the transition when the state changes.
    pub fn observe(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        let next = if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.state != State::Up && self.successes >= self.rise).then_some(State::Up)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.state != State::Down && self.failures >= self.fall).then_some(State::Down)
        }?;
        let from = std::mem::replace(&mut self.state, next);
        self.changed_at = now;
        Some(Transition { from, to: next })
    }

    /// [`Health::observe`] on a probe result, which is kept as the last result.
    pub fn record(&mut self, result: &ProbeResult, now: Instant) -> Option<Transition> {
        self.last = Some(result.clone());
        self.observe(result.ok, now)
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    pub fn successes(&self) -> u32 {
        self.successes
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn last(&self) -> Option<&ProbeResult> {
        self.last.as_ref()
    }

    pub fn changed_at(&self) -> Instant {
        self.changed_at
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn feed(h: &mut Health, oks: &[bool], now: Instant) -> Vec<Transition> {
        oks.iter().filter_map(|&ok| h.observe(ok, now)).collect()
    }

    const UP: Transition = Transition {
        from: State::Down,
        to: State::Up,
    };
    const DOWN: Transition = Transition {
        from: State::Up,
        to: State::Down,
    };

    #[test]
    fn starts_unknown_never_up() {
        let now = Instant::now();
        let h = Health::new(3, 2, now);
        assert_eq!(h.state(), State::Unknown);
        assert!(!h.is_up());
        assert!(h.last().is_none());
        assert_eq!(h.changed_at(), now);
    }

    #[test]
    fn unknown_rises_after_rise_successes() {
        let now = Instant::now();
        let mut h = Health::new(3, 2, now);
        assert_eq!(h.observe(true, now), None);
        assert_eq!(h.observe(true, now), None);
        assert_eq!(h.state(), State::Unknown);
        let later = now + Duration::from_secs(2);
        assert_eq!(
            h.observe(true, later),
            Some(Transition {
                from: State::Unknown,
                to: State::Up
            })
        );
        assert_eq!(h.changed_at(), later);
        assert_eq!(h.observe(true, later), None, "already up");
    }

    #[test]
    fn unknown_falls_after_fall_failures() {
        let now = Instant::now();
        let mut h = Health::new(3, 2, now);
        assert_eq!(h.observe(false, now), None);
        assert_eq!(
            h.observe(false, now),
            Some(Transition {
                from: State::Unknown,
                to: State::Down
            })
        );
        assert_eq!(h.observe(false, now), None, "already down");
    }

    #[test]
    fn thresholds_both_ways() {
        let now = Instant::now();
        let mut h = Health::new(2, 3, now);
        feed(&mut h, &[false, false, false], now);
        assert_eq!(h.state(), State::Down);
        assert_eq!(feed(&mut h, &[true, true], now), vec![UP]);
        assert_eq!(feed(&mut h, &[false, false], now), vec![]);
        assert!(h.is_up(), "two failures are below fall = 3");
        assert_eq!(feed(&mut h, &[false], now), vec![DOWN]);
        assert_eq!(h.failures(), 3);
        assert_eq!(feed(&mut h, &[true], now), vec![]);
        assert_eq!(h.successes(), 1);
        assert_eq!(feed(&mut h, &[true], now), vec![UP]);
    }

    #[test]
    fn flapping_is_damped() {
        let now = Instant::now();
        let mut h = Health::new(2, 2, now);
        feed(&mut h, &[true, true], now);
        assert!(h.is_up());
        // Alternating results never reach either threshold: no transitions at all.
        let flaps = [false, true].repeat(50);
        assert_eq!(feed(&mut h, &flaps, now), vec![]);
        assert!(h.is_up());

        let mut down = Health::new(2, 2, now);
        feed(&mut down, &[false, false], now);
        assert_eq!(feed(&mut down, &[true, false].repeat(50), now), vec![]);
        assert_eq!(down.state(), State::Down);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let now = Instant::now();
        let mut h = Health::new(0, 0, now);
        assert_eq!(h.observe(true, now).map(|t| t.to), Some(State::Up));
        assert_eq!(h.observe(false, now).map(|t| t.to), Some(State::Down));
    }

    #[test]
    fn record_keeps_the_last_result() {
        let now = Instant::now();
        let mut h = Health::new(1, 1, now);
        let result = ProbeResult {
            ok: false,
            detail: "connect refused".into(),
            took: Duration::from_millis(1),
        };
        assert_eq!(h.record(&result, now).map(|t| t.to), Some(State::Down));
        assert_eq!(h.last(), Some(&result));
    }
}
