//! The emulator's clock, which tests can fix or shift to exercise signature dates and task ages.
//! Reads the system clock only for [`Clock::System`] and [`Clock::Offset`].

use jiff::{SignedDuration, Timestamp};

/// Where the server's idea of "now" comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Always this instant.
    Fixed(Timestamp),
    /// The system clock shifted by this much (negative for the past).
    Offset(SignedDuration),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match *self {
            Self::System => Timestamp::now(),
            Self::Fixed(at) => at,
            Self::Offset(by) => Timestamp::now().checked_add(by).unwrap_or(Timestamp::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_shifted() {
        let at: Timestamp = "2026-11-22T05:30:00Z".parse().unwrap();
        assert_eq!(Clock::Fixed(at).now(), at);
        let ahead = Clock::Offset(SignedDuration::from_hours(2)).now();
        let gap = ahead.duration_since(Timestamp::now());
        assert!(gap > SignedDuration::from_mins(119) && gap <= SignedDuration::from_hours(2), "{gap:?}");
    }
}
