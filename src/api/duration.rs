//! Duration strings of the policy (`interval`, `jitter`, `olderThan`): a pure parser and the
//! regular expression the CRD's CEL rules use, which accept exactly the same grammar. No I/O.
//!
//! Grammar: hours, minutes and seconds, in that order, each at most once and at least one of them,
//! each a whole number of at most six digits: `90s`, `15m`, `24h`, `1h30m`, `1h0m30s`.
//! This is a subset of Go's `time.ParseDuration`, so CEL's `duration()` reads the same value.

use std::time::Duration;

/// The grammar as an RE2/Rust regular expression (no backslashes, so it can sit in a CEL string).
pub const DURATION_PATTERN: &str =
    "^(([0-9]{1,6}h)([0-9]{1,6}m)?([0-9]{1,6}s)?|([0-9]{1,6}m)([0-9]{1,6}s)?|([0-9]{1,6}s))$";

/// Examples quoted in error messages.
pub const DURATION_EXAMPLES: &str = "90s, 15m, 24h or 1h30m";

/// Largest number of digits in one component.
const MAX_DIGITS: usize = 6;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration; write hours, minutes and seconds such as {DURATION_EXAMPLES}")]
    Empty,
    /// A unit letter without a number before it.
    #[error("missing number before {unit:?} in {input:?}; write durations such as {DURATION_EXAMPLES}")]
    MissingNumber { input: String, unit: char },
    /// A number without a unit after it.
    #[error(
        "missing unit (h, m or s) after the number in {input:?}; write durations such as {DURATION_EXAMPLES}"
    )]
    MissingUnit { input: String },
    /// A character that is neither a digit nor `h`, `m`, `s`.
    #[error(
        "unexpected {found:?} in {input:?}; only whole hours (h), minutes (m) and seconds (s) are allowed, such as {DURATION_EXAMPLES}"
    )]
    UnexpectedCharacter { input: String, found: char },
    /// A unit repeated or out of the order h, m, s.
    #[error(
        "{unit:?} out of order in {input:?}; write hours, then minutes, then seconds, each once, such as 1h30m"
    )]
    UnitOrder { input: String, unit: char },
    /// Milliseconds or smaller units.
    #[error("{input:?} uses a unit below seconds; the smallest unit is s, such as 90s")]
    SubSecond { input: String },
    /// A component with more than six digits.
    #[error("number too long in {input:?}; each part may have at most {MAX_DIGITS} digits")]
    TooManyDigits { input: String },
}

/// Parses a duration such as `90s`, `15m`, `24h` or `1h30m` (see the module documentation).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    // Rank of the last unit seen: 0 none, 1 h, 2 m, 3 s.
    let mut last_rank = 0;
    for c in input.chars() {
        if c.is_ascii_digit() {
            if digits.len() == MAX_DIGITS {
                return Err(DurationError::TooManyDigits { input: input.to_owned() });
            }
            digits.push(c);
            continue;
        }
        let (rank, seconds_per_unit) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            other => {
                return Err(DurationError::UnexpectedCharacter { input: input.to_owned(), found: other });
            }
        };
        if c == 's' && digits.is_empty() && last_rank == 2 && input.ends_with("ms") {
            return Err(DurationError::SubSecond { input: input.to_owned() });
        }
        if digits.is_empty() {
            return Err(DurationError::MissingNumber { input: input.to_owned(), unit: c });
        }
        if rank <= last_rank {
            return Err(DurationError::UnitOrder { input: input.to_owned(), unit: c });
        }
        last_rank = rank;
        // At most six digits: the value fits easily.
        let value: u64 =
            digits.parse().map_err(|_| DurationError::TooManyDigits { input: input.to_owned() })?;
        total += value * seconds_per_unit;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(DurationError::MissingUnit { input: input.to_owned() });
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration in the same grammar (`1h30m`, `45s`, `0s`), dropping zero parts.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_the_documented_examples() {
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("1m"), Ok(secs(60)));
        assert_eq!(parse_duration("15m"), Ok(secs(900)));
        assert_eq!(parse_duration("24h"), Ok(secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5_400)));
        assert_eq!(parse_duration("1h0m30s"), Ok(secs(3_630)));
        assert_eq!(parse_duration("2h15s"), Ok(secs(7_215)));
        assert_eq!(parse_duration("0s"), Ok(secs(0)));
        assert_eq!(parse_duration("999999h"), Ok(secs(999_999 * 3600)));
    }

    #[test]
    fn rejects_what_the_grammar_excludes() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(parse_duration("h"), Err(DurationError::MissingNumber { unit: 'h', .. })));
        assert!(matches!(parse_duration("10"), Err(DurationError::MissingUnit { .. })));
        assert!(matches!(parse_duration("1h30"), Err(DurationError::MissingUnit { .. })));
        assert!(matches!(parse_duration("1d"), Err(DurationError::UnexpectedCharacter { found: 'd', .. })));
        assert!(matches!(parse_duration("1.5h"), Err(DurationError::UnexpectedCharacter { found: '.', .. })));
        assert!(matches!(parse_duration("-1h"), Err(DurationError::UnexpectedCharacter { found: '-', .. })));
        assert!(matches!(parse_duration(" 1h"), Err(DurationError::UnexpectedCharacter { found: ' ', .. })));
        assert!(matches!(parse_duration("300ms"), Err(DurationError::SubSecond { .. })));
        assert!(matches!(parse_duration("1mss"), Err(DurationError::MissingNumber { unit: 's', .. })));
        assert!(matches!(parse_duration("30m1h"), Err(DurationError::UnitOrder { unit: 'h', .. })));
        assert!(matches!(parse_duration("1m1m"), Err(DurationError::UnitOrder { unit: 'm', .. })));
        assert!(matches!(parse_duration("1234567s"), Err(DurationError::TooManyDigits { .. })));
    }

    #[test]
    fn errors_quote_examples() {
        let message = parse_duration("1d").unwrap_err().to_string();
        assert!(message.contains("'d'") && message.contains("1h30m"), "{message}");
    }

    #[test]
    fn formats_in_the_same_grammar() {
        assert_eq!(format_duration(secs(0)), "0s");
        assert_eq!(format_duration(secs(45)), "45s");
        assert_eq!(format_duration(secs(5_400)), "1h30m");
        assert_eq!(format_duration(secs(3_630)), "1h30s");
        assert_eq!(format_duration(secs(86_400)), "24h");
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[0-9]{1,7}[hms]", "[0-9]{0,3}", "[a-z.+ -]", "[hms]",]
    }

    proptest! {
        /// The parser and the CEL pattern agree on every input.
        #[test]
        fn parser_and_pattern_accept_the_same_strings(parts in prop::collection::vec(component(), 0..4)) {
            let input: String = parts.concat();
            let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
            prop_assert_eq!(parse_duration(&input).is_ok(), pattern.is_match(&input), "input {:?}", input);
        }

        #[test]
        fn format_then_parse_round_trips(secs in 0u64..(999_999 * 3600)) {
            let d = Duration::from_secs(secs);
            let text = format_duration(d);
            prop_assert_eq!(parse_duration(&text), Ok(d));
            prop_assert!(regex::Regex::new(DURATION_PATTERN).unwrap().is_match(&text));
        }
    }
}
