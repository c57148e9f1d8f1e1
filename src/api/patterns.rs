//! Regular expressions shared by the CRD's CEL rules and by [`crate::api::validate`], so the
//! apiserver and the controller accept the same values. No I/O.
//!
//! Every pattern is valid in both RE2 (CEL) and the `regex` crate, is anchored, and contains no
//! backslash or quote, so it can be placed inside a single-quoted CEL string as is.

use regex::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

/// A Huawei Cloud region id such as `cn-north-4` or `ap-southeast-1`.
pub const REGION_PATTERN: &str = "^[a-z]{2,}-[a-z]+-[0-9]+$";

/// A Huawei Cloud project id: 32 lowercase hexadecimal characters.
pub const PROJECT_ID_PATTERN: &str = "^[0-9a-f]{32}$";

/// An SDRS protection group id (a UUID such as `897f57b2-6e94-4179-b414-9532726c59f2`).
pub const PROTECTION_GROUP_ID_PATTERN: &str =
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// The name of a Secret: a lowercase RFC 1123 subdomain.
pub const SECRET_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// An IANA time zone name such as `UTC`, `Asia/Shanghai` or `America/Argentina/Buenos_Aires`.
/// The controller also looks the name up in the time zone database.
pub const TIME_ZONE_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";

const MONTH_NAMES: &str = "(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)";
const DAY_NAMES: &str = "(?i:sun|mon|tue|wed|thu|fri|sat)";

/// One cron field: a comma-separated list of `*`, `*/step`, `value`, `a-b` or `a-b/step`.
fn cron_field(value: &str) -> String {
    let element = format!("([*](/[1-9][0-9]?)?|{value}(-{value}(/[1-9][0-9]?)?)?)");
    format!("{element}(,{element})*")
}

/// A five-field cron expression (minute, hour, day of month, month, day of week) separated by
/// single or repeated spaces. Months and days may be named (`JAN`, `mon`). Seconds, years,
/// `@daily`-style nicknames and the `L`, `W`, `#` extensions are not accepted.
pub fn cron_pattern() -> String {
    let fields = [
        cron_field("[0-5]?[0-9]"),
        cron_field("([01]?[0-9]|2[0-3])"),
        cron_field("(0?[1-9]|[12][0-9]|3[01])"),
        cron_field(&format!("(0?[1-9]|1[0-2]|{MONTH_NAMES})")),
        cron_field(&format!("([0-7]|{DAY_NAMES})")),
    ];
    format!("^{}$", fields.join("[ ]+"))
}

/// Most heap one compiled `namePattern` may take, and the same for its lazy DFA: enough for any
/// ordinary name filter, and a bound on what a hostile pattern (`\w{100}`, seven characters, is
/// megabytes) can cost the controller.
pub const NAME_PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// Most distinct patterns kept compiled; past it the cache starts over.
const NAME_PATTERN_CACHE: usize = 1024;

/// Why a `namePattern` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NamePatternError {
    #[error("namePattern is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error(
        "namePattern does not compile within {} KiB (Unicode classes such as \\w repeated many times grow \
         fast; write [0-9A-Za-z_] or repeat less)",
        NAME_PATTERN_SIZE_LIMIT / 1024
    )]
    TooBig(#[source] regex::Error),
    #[error("namePattern is not a valid regular expression")]
    Syntax(#[source] regex::Error),
}

/// Compiles a policy's `namePattern` with the length and size limits, from a process-wide cache:
/// a pattern is compiled once, not on every reconcile.
pub fn compile_name_pattern(pattern: &str) -> Result<Regex, NamePatternError> {
    static CACHE: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Mutex::default);
    let max = crate::api::policy::MAX_NAME_PATTERN_LEN;
    if pattern.chars().count() > max {
        return Err(NamePatternError::TooLong { len: pattern.chars().count(), max });
    }
    if let Some(re) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).get(pattern) {
        return Ok(re.clone());
    }
    let re = RegexBuilder::new(pattern)
        .size_limit(NAME_PATTERN_SIZE_LIMIT)
        .dfa_size_limit(NAME_PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => NamePatternError::TooBig(e),
            _ => NamePatternError::Syntax(e),
        })?;
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= NAME_PATTERN_CACHE {
        cache.clear();
    }
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn re(pattern: &str) -> Regex {
        Regex::new(pattern).unwrap()
    }

    #[test]
    fn patterns_compile_and_fit_in_cel_strings() {
        let cron = cron_pattern();
        for p in [
            REGION_PATTERN,
            PROJECT_ID_PATTERN,
            PROTECTION_GROUP_ID_PATTERN,
            SECRET_NAME_PATTERN,
            TIME_ZONE_PATTERN,
            &cron,
            crate::api::duration::DURATION_PATTERN,
        ] {
            re(p);
            assert!(!p.contains('\\') && !p.contains('\'') && !p.contains('"'), "{p}");
            assert!(p.starts_with('^') && p.ends_with('$'), "{p}");
        }
    }

    #[test]
    fn cron_pattern_accepts_common_schedules() {
        let cron = re(&cron_pattern());
        for ok in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 0 1 1 *",
            "30 2 * * 1-5",
            "0 9-17/2 * * MON-FRI",
            "0 0 1,15 * *",
            "5 4 * jan,jul sun",
            "0  3  *  *  *",
            "59 23 31 12 7",
        ] {
            assert!(cron.is_match(ok), "{ok:?} should match");
        }
    }

    #[test]
    fn cron_pattern_rejects_malformed_schedules() {
        let cron = re(&cron_pattern());
        for bad in [
            "",
            "* * * *",
            "0 0 3 * * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "0 0 * * 8",
            "@daily",
            "0 0 L * *",
            "0 0 * * 5#2",
            "*/0 * * * *",
            " 0 3 * * *",
            "0 3 * * * ",
            "0\t3 * * *",
            "5/15 * * * *",
            "every day",
        ] {
            assert!(!cron.is_match(bad), "{bad:?} should not match");
        }
    }

    #[test]
    fn simple_patterns_accept_and_reject() {
        assert!(re(REGION_PATTERN).is_match("cn-north-4"));
        assert!(re(REGION_PATTERN).is_match("ap-southeast-1"));
        assert!(!re(REGION_PATTERN).is_match("CN-north-4"));
        assert!(!re(REGION_PATTERN).is_match("cn-north"));
        assert!(re(PROJECT_ID_PATTERN).is_match("0605767b5c00d4bb2f10c01a1e3b3a7e"));
        assert!(!re(PROJECT_ID_PATTERN).is_match("0605767B5C00D4BB2F10C01A1E3B3A7E"));
        assert!(!re(PROJECT_ID_PATTERN).is_match("0605767b5c00d4bb2f10c01a1e3b3a7"));
        assert!(re(PROTECTION_GROUP_ID_PATTERN).is_match("897f57b2-6e94-4179-b414-9532726c59f2"));
        assert!(!re(PROTECTION_GROUP_ID_PATTERN).is_match("897f57b26e944179b4149532726c59f2"));
        assert!(re(SECRET_NAME_PATTERN).is_match("hwcloud-credentials"));
        assert!(re(SECRET_NAME_PATTERN).is_match("a.b-c"));
        assert!(!re(SECRET_NAME_PATTERN).is_match("Hw_Cloud"));
        assert!(!re(SECRET_NAME_PATTERN).is_match("-x"));
        for tz in ["UTC", "Asia/Shanghai", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "EST5EDT"] {
            assert!(re(TIME_ZONE_PATTERN).is_match(tz), "{tz}");
        }
        for tz in ["", "/UTC", "Asia/", "Asia Shanghai", "+08:00"] {
            assert!(!re(TIME_ZONE_PATTERN).is_match(tz), "{tz}");
        }
    }

    #[test]
    fn name_patterns_are_bounded_and_cached() {
        assert!(compile_name_pattern("^tmp-").unwrap().is_match("tmp-vm-01"));
        assert!(compile_name_pattern("[a-z]{100}").is_ok());
        let big = compile_name_pattern("\\w{100}").unwrap_err();
        assert!(matches!(big, NamePatternError::TooBig(_)), "{big}");
        assert!(big.to_string().contains("[0-9A-Za-z_]"), "{big}");
        assert!(matches!(compile_name_pattern("(unclosed"), Err(NamePatternError::Syntax(_))));
        let long = "a".repeat(crate::api::policy::MAX_NAME_PATTERN_LEN + 1);
        assert!(matches!(compile_name_pattern(&long), Err(NamePatternError::TooLong { len: 257, max: 256 })));
        let first = compile_name_pattern("^kp-").unwrap();
        assert_eq!(first.as_str(), compile_name_pattern("^kp-").unwrap().as_str());
    }
}
