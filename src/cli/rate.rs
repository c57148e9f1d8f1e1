//! The rate-limit flags `run` and `purge` share, turned into a [`RateControl`]. No I/O.

use std::num::NonZeroU32;

use crate::cloud::ratelimit::{DEFAULT_MAX_RPS, DEFAULT_START_RPS};
use crate::cloud::{AdaptiveRate, RateControl, RateLimit};

/// How fast cloud calls may go, per (endpoint host, credentials identity), across all policies.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct RateArgs {
    /// Fix the rate at this many requests per second per (endpoint, access key), with bursts of one
    /// second's worth, instead of adapting it; overrides --max-requests-per-second.
    #[arg(long)]
    pub requests_per_second: Option<NonZeroU32>,
    /// Ceiling of the adaptive rate per (endpoint, access key). The rate starts at
    /// --start-requests-per-second, rises while calls succeed, halves on each 429 (honouring
    /// Retry-After) and never falls below 1.
    #[arg(long, default_value_t = nonzero(DEFAULT_MAX_RPS))]
    pub max_requests_per_second: NonZeroU32,
    /// Where the adaptive rate starts (lowered to --max-requests-per-second if above it).
    #[arg(long, default_value_t = nonzero(DEFAULT_START_RPS))]
    pub start_requests_per_second: NonZeroU32,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateArgs {
    /// The rate control these flags describe.
    pub fn control(&self) -> RateControl {
        match self.requests_per_second {
            Some(fixed) => RateLimit::per_second(fixed).into(),
            None => AdaptiveRate::new(self.start_requests_per_second, self.max_requests_per_second).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        rate: RateArgs,
    }

    fn control(args: &[&str]) -> RateControl {
        Command::parse_from(std::iter::once("x").chain(args.iter().copied())).rate.control()
    }

    #[test]
    fn adaptive_by_default_fixed_on_request() {
        assert_eq!(control(&[]), RateControl::Adaptive(AdaptiveRate { start: 20.0, max: 200.0, floor: 1.0 }));
        assert_eq!(
            control(&["--max-requests-per-second", "1000", "--start-requests-per-second=50"]),
            RateControl::Adaptive(AdaptiveRate { start: 50.0, max: 1000.0, floor: 1.0 })
        );
        assert_eq!(
            control(&["--max-requests-per-second=5"]),
            RateControl::Adaptive(AdaptiveRate { start: 5.0, max: 5.0, floor: 1.0 })
        );
        assert_eq!(
            control(&["--requests-per-second", "30", "--max-requests-per-second=1000"]),
            RateControl::Fixed(RateLimit::per_second(nonzero(30)))
        );
        assert!(Command::try_parse_from(["x", "--requests-per-second=0"]).is_err());
    }
}
