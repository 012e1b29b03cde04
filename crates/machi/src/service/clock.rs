//! Time, passed in (the domain has no clock).

use chrono::{DateTime, NaiveDate, Utc};

/// Japan Standard Time: 処理日 is the day in Japan.
pub use machi_domain::dates::jst;

/// Where "now" comes from: the system clock, a fixed instant, or (tests)
/// a clock that runs `factor` times faster than real time from `origin`,
/// so that schedules of hours and days (webhook retries) run in seconds.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Fixed(DateTime<Utc>),
    Scaled {
        origin: DateTime<Utc>,
        started: std::time::Instant,
        factor: u32,
    },
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
            Clock::Scaled {
                origin,
                started,
                factor,
            } => {
                let real = started.elapsed().as_micros() as i64;
                *origin + chrono::Duration::microseconds(real.saturating_mul(i64::from(*factor)))
            }
        }
    }

    /// A clock running `factor` times faster than real time from now.
    pub fn scaled(factor: u32) -> Clock {
        Clock::Scaled {
            origin: Utc::now(),
            started: std::time::Instant::now(),
            factor: factor.max(1),
        }
    }

    /// How long to wait in real time for `d` to pass on this clock.
    pub fn real_duration(&self, d: std::time::Duration) -> std::time::Duration {
        match self {
            Clock::Scaled { factor, .. } => d / (*factor).max(1),
            _ => d,
        }
    }

    /// 処理日: today in Japan.
    pub fn today(&self) -> NaiveDate {
        self.now().with_timezone(&jst()).date_naive()
    }
}
