//! Randomized requests for comparing our signer with the SDK's, from a seeded RNG so a failure can be
//! replayed. Each case knows both forms: the JSON the SDK script receives and the headers the SDK ends
//! up sending (what the server, and so our signer, sees).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use taskreaper::cloud::signing;

/// One request to sign.
#[derive(Debug, Clone)]
pub struct Case {
    pub method: String,
    pub host: String,
    /// The resource path as sent: some segments raw, some percent-encoded as the SDK encodes path
    /// parameters.
    pub path: String,
    /// Decoded query pairs, in generation order.
    pub query: Vec<(String, String)>,
    /// The same query as the SDK receives it: repeated names sometimes as one list value, some
    /// single values as JSON booleans or integers.
    pub sdk_query: Vec<(String, Value)>,
    /// Headers the caller sets; names are distinct ignoring case.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub date: String,
    pub ak: String,
    pub sk: String,
    pub security_token: Option<String>,
    pub project_id: Option<String>,
}

impl Case {
    /// The request as `sign_random.py` reads it.
    pub fn sdk_json(&self) -> Value {
        json!({
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "query": self.sdk_query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body": self.body,
            "date": self.date,
            "ak": self.ak,
            "sk": self.sk,
            "security_token": self.security_token,
            "project_id": self.project_id,
        })
    }

    /// Every header the SDK sends apart from `Authorization`: the caller's, then what its credentials
    /// add (`X-Project-Id`, `X-Security-Token`), `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` when the
    /// `Content-Type` header is neither JSON nor BSON, `Host` and `X-Sdk-Date`.
    pub fn headers_as_sent(&self) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if let Some(project) = &self.project_id {
            headers.push(("X-Project-Id".into(), project.clone()));
        }
        if let Some(token) = &self.security_token {
            headers.push(("X-Security-Token".into(), token.clone()));
        }
        if unsigned_payload(&self.headers) {
            headers.push((signing::CONTENT_SHA256_HEADER.into(), "UNSIGNED-PAYLOAD".into()));
        }
        headers.push(("Host".into(), self.host.clone()));
        headers.push((signing::DATE_HEADER.into(), self.date.clone()));
        headers
    }
}

/// Whether the SDK adds `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`: it looks up `Content-Type` with
/// exactly that spelling.
fn unsigned_payload(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k == "Content-Type" && !v.starts_with("application/json") && !v.starts_with("application/bson")
    })
}

/// Whether the request the SDK signs carries `X-Sdk-Content-Sha256`, from the caller or added.
pub fn has_content_sha256(headers: &[(String, String)]) -> bool {
    unsigned_payload(headers)
        || headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(signing::CONTENT_SHA256_HEADER))
}

const METHODS: [&str; 8] = ["GET", "DELETE", "POST", "PUT", "PATCH", "HEAD", "get", "delete"];
const HOSTS: [&str; 6] = [
    "sdrs.cn-north-4.myhuaweicloud.com",
    "kms.ap-southeast-1.myhuaweicloud.com",
    "127.0.0.1:8443",
    "localhost:18080",
    "[::1]:9000",
    "sdrs.la-south-2.myhuaweicloud.com:443",
];
const PLAIN_SEGMENTS: [&str; 8] =
    ["v1", "v3", "task-center", "failure-jobs", "failed-tasks", "batch", "x.y_z-w", "UPPER"];
/// Segments that stress encoding; sent raw or percent-encoded.
const TRICKY_SEGMENTS: [&str; 16] = [
    "a b",
    "c+d",
    "e~f",
    "名字",
    "é",
    "emoji😀",
    "semi;colon",
    "at@sign",
    "eq=amp&",
    "paren(s)",
    "sp ace+plus~tilde",
    "a/b",
    "100%",
    "quote'\"",
    "comma,star*",
    "dollar$!",
];
/// Already-encoded segments, sent as they are: encoded slashes, lower-case hex, bad escapes, bytes
/// that are not UTF-8.
const ENCODED_SEGMENTS: [&str; 9] =
    ["a%2Fb", "a%2fb", "%E5%90%8D", "100%25", "%zz", "%ff", "%E5%90", "x%20y%2Bz", "%7E%2D%5F%2E"];
const QUERY_NAMES: [&str; 14] = [
    "limit",
    "offset",
    "failure_status",
    "resource_name",
    "server_group_id",
    "resource_type",
    "name with space",
    "plus+name",
    "tilde~",
    "名",
    "a/b",
    "",
    "k=v",
    "amp&",
];
const QUERY_VALUES: [&str; 14] = [
    "",
    "createFail",
    "server_groups",
    "a b",
    "a+b",
    "a b+c/d~e",
    "名字",
    "é",
    "100%",
    "x=y&z",
    "  padded  ",
    "true",
    "0",
    "emoji😀",
];
const HEADER_NAMES: [&str; 11] = [
    "Content-Type",
    "User-Agent",
    "X-Request-Id",
    "Accept",
    "X-Language",
    "x-custom_underscore",
    "X_Other_Underscore",
    "X-Mixed-CASE",
    "x-lower",
    "X-Domain-Id",
    "X-Sdk-Content-Sha256",
];
const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/json;charset=UTF-8",
    "application/bson",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
];
const HEADER_VALUES: [&str; 8] = [
    "plain",
    "  surrounded by spaces  ",
    "\ttabbed\t",
    " inner  spaces kept ",
    "huaweicloud-usdk-python/3.0",
    "zh-cn",
    "名字",
    "a=b; c=d",
];
/// Values for an explicit `X-Sdk-Content-Sha256` besides a random hex digest: the SDK trims the value,
/// takes an empty one as absent, and reads a non-ASCII one after re-decoding its UTF-8 as Latin-1.
const CONTENT_SHA256_VALUES: [&str; 7] = [
    "UNSIGNED-PAYLOAD",
    "  UNSIGNED-PAYLOAD\t",
    "unsigned-payload",
    "",
    "   ",
    "\u{1c}UNSIGNED-PAYLOAD\u{1f}",
    "名字",
];
const BODIES: [&str; 5] = ["{}", "{\"failure_jobs\":[]}", "plain text body", "名字 ünïcödé", ""];

/// `count` requests from `seed`.
pub fn generate(seed: u64, count: usize) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| case(&mut rng)).collect()
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

fn hex(rng: &mut StdRng, len: usize) -> String {
    (0..len).map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)])).collect()
}

fn alnum(rng: &mut StdRng, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())])).collect()
}

fn case(rng: &mut StdRng) -> Case {
    let (query, sdk_query) = query(rng);
    let headers = headers(rng);
    // Requests that carry X-Sdk-Content-Sha256 (set by the caller, or by the SDK for a Content-Type
    // that is neither JSON nor BSON) come with and without a body as often as each other: with an
    // empty body the header's value is not used.
    let body_chance = if has_content_sha256(&headers) { 0.5 } else { 0.25 };
    let body = rng.random_bool(body_chance).then(|| pick(rng, &BODIES).to_string());
    let seconds = rng.random_range(946_684_800_i64..4_102_444_799);
    let date = signing::format_sdk_date(jiff::Timestamp::from_second(seconds).expect("in range"));
    let sk = if rng.random_bool(0.1) { format!("{}/+=密钥", alnum(rng, 30)) } else { alnum(rng, 40) };
    Case {
        method: pick(rng, &METHODS).to_string(),
        host: pick(rng, &HOSTS).to_string(),
        path: path(rng),
        query,
        sdk_query,
        headers,
        body,
        date,
        ak: alnum(rng, 20).to_ascii_uppercase(),
        sk,
        security_token: rng.random_bool(0.25).then(|| {
            let len = rng.random_range(16..200);
            alnum(rng, len)
        }),
        project_id: rng.random_bool(0.5).then(|| hex(rng, 32)),
    }
}

fn path(rng: &mut StdRng) -> String {
    let segments = rng.random_range(1..=6);
    let mut path = String::new();
    for _ in 0..segments {
        path.push('/');
        match rng.random_range(0..10) {
            0..=2 => path.push_str(pick(rng, &PLAIN_SEGMENTS)),
            3 => path.push_str(&hex(rng, 32)),
            4..=5 => path.push_str(pick(rng, &TRICKY_SEGMENTS)),
            // How the SDK fills a path parameter: quote(value, safe='').
            6..=7 => path.push_str(&signing::encode(pick(rng, &TRICKY_SEGMENTS))),
            8 => path.push_str(pick(rng, &ENCODED_SEGMENTS)),
            _ => {} // an empty segment: `//`
        }
    }
    if rng.random_bool(0.15) {
        path.push('/');
    }
    path
}

/// Decoded query pairs.
type Pairs = Vec<(String, String)>;
/// A query as the SDK receives it.
type SdkQuery = Vec<(String, Value)>;

/// The decoded pairs, and the same query in the SDK's form.
fn query(rng: &mut StdRng) -> (Pairs, SdkQuery) {
    let mut names: Vec<&str> = Vec::new();
    for _ in 0..rng.random_range(0..=6) {
        if !names.is_empty() && rng.random_bool(0.3) {
            let again = names[rng.random_range(0..names.len())];
            names.push(again);
        } else {
            names.push(pick(rng, &QUERY_NAMES));
        }
    }
    let mut pairs = Vec::new();
    let mut sdk = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for name in &names {
        if done.contains(name) {
            continue;
        }
        done.push(name);
        let repeats = names.iter().filter(|n| *n == name).count();
        if repeats == 1 {
            let (text, value) = match rng.random_range(0..8) {
                0 => {
                    let b = rng.random_bool(0.5);
                    (b.to_string(), json!(b))
                }
                1 => {
                    let n = rng.random_range(0..100_000_u32);
                    (n.to_string(), json!(n))
                }
                _ => {
                    let v = pick(rng, &QUERY_VALUES);
                    (v.to_string(), json!(v))
                }
            };
            pairs.push((name.to_string(), text));
            sdk.push((name.to_string(), value));
        } else {
            let values: Vec<String> = (0..repeats).map(|_| pick(rng, &QUERY_VALUES).to_string()).collect();
            pairs.extend(values.iter().map(|v| (name.to_string(), v.clone())));
            if rng.random_bool(0.5) {
                sdk.push((name.to_string(), json!(values)));
            } else {
                sdk.extend(values.iter().map(|v| (name.to_string(), json!(v))));
            }
        }
    }
    (pairs, sdk)
}

fn headers(rng: &mut StdRng) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    // One request in three sets X-Sdk-Content-Sha256 first; others may still pick it below.
    let explicit_content_sha256 = rng.random_bool(1.0 / 3.0);
    for i in 0..rng.random_range(0..=5) + usize::from(explicit_content_sha256) {
        let name = if explicit_content_sha256 && i == 0 {
            signing::CONTENT_SHA256_HEADER
        } else {
            pick(rng, &HEADER_NAMES)
        };
        if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            continue;
        }
        let name = match rng.random_range(0..6) {
            0 => name.to_ascii_lowercase(),
            1 => name.to_ascii_uppercase(),
            _ => name.to_string(),
        };
        let value = if name.eq_ignore_ascii_case("Content-Type") {
            pick(rng, &CONTENT_TYPES).to_string()
        } else if name.eq_ignore_ascii_case(signing::CONTENT_SHA256_HEADER) {
            if unsigned_payload(&headers) {
                continue; // the SDK would overwrite it
            }
            if rng.random_bool(0.4) { hex(rng, 64) } else { pick(rng, &CONTENT_SHA256_VALUES).to_string() }
        } else {
            pick(rng, &HEADER_VALUES).to_string()
        };
        headers.push((name, value));
    }
    // A Content-Type added after an explicit X-Sdk-Content-Sha256 must not make the SDK overwrite it.
    if unsigned_payload(&headers)
        && headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(signing::CONTENT_SHA256_HEADER))
    {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(signing::CONTENT_SHA256_HEADER));
    }
    headers
}
