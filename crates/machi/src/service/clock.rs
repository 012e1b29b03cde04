//! Time, passed in (the domain has no clock).

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

/// Japan Standard Time: 処理日 is the day in Japan.
pub fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// Where "now" comes from: the system clock, or a fixed instant in tests.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// 処理日: today in Japan.
    pub fn today(&self) -> NaiveDate {
        self.now().with_timezone(&jst()).date_naive()
    }
}
