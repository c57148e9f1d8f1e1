//! Property tests: every parser of what the cloud sends (the three list pages through the client's
//! own decode path, the error-body reader, task times) and the signer's canonicalization take
//! random and mutated input without panicking, each case in bounded time. Mutations start from the
//! documented example bodies. No I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::error::ApiError;
use super::http::json;
use super::model::tests::{GROUPS_EXAMPLE, KPS_EXAMPLE, SDRS_EXAMPLE};
use super::model::{FailedTaskPage, FailureJobPage, ProtectionGroupPage, parse_task_time};
use super::signing::{self, Request};

/// The most one case may take, in a debug build on a busy machine.
const CASE_BOUND: Duration = Duration::from_millis(100);

/// Error bodies in every shape the error reader knows.
const ERROR_EXAMPLES: [&str; 6] = [
    r#"{"error_code":"KPS.XXX","error_msg":"XXX"}"#,
    r#"{"errorCode":"SDRS.1601","errorMsg":"The protection group does not exist."}"#,
    r#"{"code":"APIGW.0301","message":"Incorrect IAM authentication information"}"#,
    r#"{"error":{"code":"E.1","message":"nested"}}"#,
    r#"{"badRequest":{"error_code":"E.2","error_msg":"nested snake"}}"#,
    r#"{"error_msg":"denied","error_code":"IAM.0002","encoded_authorization_message":"abc=="}"#,
];

/// Fragments a mutation splices in: JSON tokens of the wrong type, numbers out of range, escapes,
/// deep nesting, invalid UTF-8.
const TOKENS: [&[u8]; 16] = [
    b"null",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"\"\\u0000\\ud800\"",
    b"true",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"\xff\xfe\xc3",
    b"\"1523342130000\"",
    b"{\"x\":{\"y\":{\"z\":[]}}}",
];

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Edit {
    Flip { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize, len: usize },
    Splice { at: usize, token: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::Flip { at, byte }),
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::Insert { at, byte }),
        (at, 1usize..64).prop_map(|(at, len)| Edit::Remove { at, len }),
        (at, 0..TOKENS.len()).prop_map(|(at, token)| Edit::Splice { at, token }),
        (at, 1usize..256).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        at.prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(body: &mut Vec<u8>, edit: &Edit) {
    let pos = |at: usize, body: &Vec<u8>| if body.is_empty() { 0 } else { at % (body.len() + 1) };
    match *edit {
        Edit::Flip { at, byte } => {
            if !body.is_empty() {
                let i = at % body.len();
                body[i] = byte;
            }
        }
        Edit::Insert { at, byte } => {
            let i = pos(at, body);
            body.insert(i, byte);
        }
        Edit::Remove { at, len } => {
            let i = pos(at, body);
            let end = (i + len).min(body.len());
            body.drain(i..end);
        }
        Edit::Splice { at, token } => {
            let i = pos(at, body);
            body.splice(i..i, TOKENS[token].iter().copied());
        }
        Edit::Duplicate { at, len } => {
            let i = pos(at, body);
            let end = (i + len).min(body.len());
            let copy = body[i..end].to_vec();
            body.splice(end..end, copy);
        }
        Edit::Truncate { at } => {
            let i = pos(at, body);
            body.truncate(i);
        }
    }
}

/// A documented example (list or error body) with up to 12 edits.
fn mutated_body() -> impl Strategy<Value = Vec<u8>> {
    let examples: Vec<&'static str> =
        [KPS_EXAMPLE, SDRS_EXAMPLE, GROUPS_EXAMPLE].into_iter().chain(ERROR_EXAMPLES).collect();
    (prop::sample::select(examples), prop::collection::vec(arb_edit(), 0..12)).prop_map(|(example, edits)| {
        let mut body = example.as_bytes().to_vec();
        for edit in &edits {
            apply(&mut body, edit);
        }
        body
    })
}

/// Random bytes, random text, or a mutated example.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        random_bytes(4096),
        hostile_text(2048).prop_map(String::into_bytes),
        mutated_body(),
        mutated_body(),
    ]
}

/// Every parser of a response body, as the client runs it.
fn parse_everything(body: &[u8], status: u16) {
    let _ = json::<FailedTaskPage>(body);
    let _ = json::<FailureJobPage>(body);
    let _ = json::<ProtectionGroupPage>(body);
    let error = ApiError::from_response(status, Some("req".into()), body);
    assert!(error.message.chars().count() <= super::error::MAX_MESSAGE_CHARS + 1);
    assert!(!error.code.is_empty());
    let text = String::from_utf8_lossy(body);
    let _ = parse_task_time(&text);
}

/// Runs `cases` cases, each timed; returns the slowest. A case over [`CASE_BOUND`] is run twice
/// more and keeps its fastest time: a parser that is slow on an input is slow every time, while a
/// test thread preempted on a busy machine is not.
fn run_timed<S: Strategy>(cases: u32, strategy: S, test: impl Fn(&S::Value)) -> Duration {
    let slowest = AtomicU64::new(0);
    let timed = |value: &S::Value| {
        let started = Instant::now();
        test(value);
        started.elapsed()
    };
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&strategy, |value| {
        let mut took = timed(&value);
        for _ in 0..2 {
            if took >= CASE_BOUND {
                took = took.min(timed(&value));
            }
        }
        slowest.fetch_max(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        prop_assert!(took < CASE_BOUND, "one case took {took:?}");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
    eprintln!("{cases} cases, slowest {slowest:?}");
    slowest
}

#[test]
fn response_parsers_take_hostile_bodies_without_panicking_in_bounded_time() {
    let strategy = (hostile_body(), 100u16..600);
    run_timed(2048, strategy, |(body, status)| parse_everything(body, *status));
}

#[test]
fn mutated_examples_decode_or_fail_cleanly() {
    // Unmutated examples still decode, so the mutations start from bodies that parse.
    assert!(json::<FailedTaskPage>(KPS_EXAMPLE.as_bytes()).is_ok());
    assert!(json::<FailureJobPage>(SDRS_EXAMPLE.as_bytes()).is_ok());
    assert!(json::<ProtectionGroupPage>(GROUPS_EXAMPLE.as_bytes()).is_ok());
    run_timed(2048, mutated_body(), |body| {
        // A page that decodes holds no more items than its body has bytes.
        if let Ok(page) = json::<FailureJobPage>(body) {
            assert!(page.failure_jobs.len() <= body.len());
        }
        if let Ok(page) = json::<FailedTaskPage>(body) {
            assert!(page.tasks.len() <= body.len());
        }
        parse_everything(body, 400);
    });
}

/// A path or query text of up to `max` characters: any character, with `%`, `/`, `?`, `#`, `+`,
/// space and hex digits common so that partial, invalid and double percent-escapes turn up. Built
/// from a seed (proptest picks the seed and the length), which is much faster than a strategy per
/// character and still reproducible.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    (any::<u64>(), 0..max).prop_map(|(seed, len)| {
        use rand::{RngExt, SeedableRng};
        const COMMON: [char; 14] = ['%', '%', '/', '?', '#', '+', ' ', '0', '2', 'F', 'f', 'C', '3', '.'];
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len)
            .map(|_| {
                if rng.random_bool(0.5) {
                    COMMON[rng.random_range(0..COMMON.len())]
                } else {
                    char::from_u32(rng.random_range(0..0x11_0000u32)).unwrap_or('\u{fffd}')
                }
            })
            .collect()
    })
}

/// Random bytes from a seed, for the same reason.
fn random_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 0..max).prop_map(|(seed, len)| {
        use rand::{Rng, SeedableRng};
        let mut bytes = vec![0; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
        bytes
    })
}

fn is_canonical(text: &str, extra: &[u8]) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b) || extra.contains(&b))
}

#[test]
fn canonicalization_takes_hostile_paths_queries_and_headers() {
    let pairs = || prop::collection::vec((hostile_text(64), hostile_text(64)), 0..16);
    let strategy = (hostile_text(2048), pairs(), pairs(), random_bytes(256));
    run_timed(1024, strategy, |(path, query, headers, body)| {
        let uri = signing::canonical_uri(path);
        assert!(uri.ends_with('/') && is_canonical(&uri, b"/"), "{uri}");
        assert_eq!(signing::canonical_uri(path), uri, "deterministic");
        let q = signing::canonical_query(query);
        assert!(is_canonical(&q, b"=&"), "{q}");
        let names = signing::signed_header_names(headers);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        let req = Request { method: "DELETE", path, query, headers, body };
        let canonical = signing::canonical_request(&req, &names);
        let auth = signing::authorize(&req, "AK", b"SK", "20261122T053000Z");
        assert!(signing::verify(&req, &auth, b"SK", "20261122T053000Z"), "{canonical}");
        let _ = signing::payload_hash(headers, body);
        let _ = signing::encode(path);
    });
}

/// Time of the fastest of three runs of `f`.
fn time(f: impl Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Pathological shapes at 128 KiB and 1 MiB: the time grows about linearly (a quadratic parser
/// would take 64 times as long at 8 times the size; the bound allows 24 times plus slack).
#[test]
fn large_hostile_inputs_take_about_linear_time() {
    type Shape = (&'static str, fn(usize) -> Vec<u8>);
    let shapes: [Shape; 6] = [
        ("open brackets", |n| vec![b'['; n]),
        ("one long string", |n| {
            let mut body = b"{\"tasks\":[{\"task_id\":\"".to_vec();
            body.extend(std::iter::repeat_n(b'a', n));
            body
        }),
        ("many empty tasks", |n| {
            let mut body = b"{\"total\":1,\"tasks\":[".to_vec();
            body.extend(b"{},".iter().copied().cycle().take(n));
            body.extend(b"{}]}");
            body
        }),
        ("percent signs", |n| b"%2".iter().copied().cycle().take(n).collect()),
        ("escapes", |n| {
            let mut body = b"{\"error_msg\":\"".to_vec();
            body.extend(b"\\u00e9".iter().copied().cycle().take(n));
            body
        }),
        ("digits", |n| std::iter::repeat_n(b'9', n).collect()),
    ];
    for (name, make) in shapes {
        let (small, large) = (make(128 << 10), make(1 << 20));
        let work = |body: &[u8]| {
            parse_everything(body, 500);
            let text = String::from_utf8_lossy(body);
            let _ = signing::canonical_uri(&text);
            let _ = signing::canonical_query(&[(text.to_string(), text.to_string())]);
        };
        let (t_small, t_large) = (time(|| work(&small)), time(|| work(&large)));
        eprintln!("{name}: 128 KiB {t_small:?}, 1 MiB {t_large:?}");
        assert!(t_large <= t_small * 24 + Duration::from_millis(250), "{name}: {t_small:?} then {t_large:?}");
        assert!(t_large < Duration::from_secs(5), "{name}: {t_large:?}");
    }
}
