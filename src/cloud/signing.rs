//! SDK-HMAC-SHA256 request signing, as the official Huawei Cloud SDKs do it. Pure: no I/O, the clock
//! is passed in, so the same inputs always give the same `Authorization`.

use hmac::digest::Key;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The algorithm name that starts the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header carrying the signing time, `YYYYMMDDTHHMMSSZ` in UTC.
pub const DATE_HEADER: &str = "X-Sdk-Date";
/// A header that, on a request with a body, replaces the body hash in the canonical request unless its
/// value is blank. With an empty body it is signed like any header but the hash stays the empty one.
pub const CONTENT_SHA256_HEADER: &str = "X-Sdk-Content-Sha256";

const SDK_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Everything but `A-Z a-z 0-9 - _ . ~` is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Errors from reading a signed request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("Authorization header does not start with {ALGORITHM}")]
    UnknownAlgorithm,
    #[error("Authorization header lacks the {0} field")]
    MissingField(&'static str),
    #[error("X-Sdk-Date {0:?} is not in the form YYYYMMDDTHHMMSSZ")]
    BadDate(String),
}

/// A request as the signer sees it. `headers` must already hold `Host` and `X-Sdk-Date`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, possibly percent-encoded.
    pub path: &'a str,
    /// Query pairs, decoded.
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The parts of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// Parses `SDK-HMAC-SHA256 Access=..., SignedHeaders=a;b, Signature=...`.
    pub fn parse(value: &str) -> Result<Self, SigningError> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or(SigningError::UnknownAlgorithm)?;
        let field = |name: &'static str| {
            rest.split(',')
                .filter_map(|part| part.trim().split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.trim().to_string())
                .ok_or(SigningError::MissingField(name))
        };
        Ok(Self {
            access_key: field("Access")?,
            signed_headers: field("SignedHeaders")?
                .split(';')
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
            signature: field("Signature")?,
        })
    }

    /// Renders the header value.
    pub fn header_value(&self) -> String {
        format!(
            "{ALGORITHM} Access={}, SignedHeaders={}, Signature={}",
            self.access_key,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// Formats a time as `X-Sdk-Date` wants it.
pub fn format_sdk_date(now: Timestamp) -> String {
    now.strftime(SDK_DATE_FORMAT).to_string()
}

/// Parses an `X-Sdk-Date` value.
pub fn parse_sdk_date(value: &str) -> Result<Timestamp, SigningError> {
    jiff::fmt::strtime::parse(SDK_DATE_FORMAT, value)
        .and_then(|t| t.to_datetime())
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|_| SigningError::BadDate(value.to_string()))
}

/// Percent-encodes keeping only ASCII letters, digits and `-_.~`.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Every header name, lower-cased, except those containing `_`; sorted and de-duplicated.
pub fn signed_header_names(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> =
        headers.iter().map(|(k, _)| k.to_ascii_lowercase()).filter(|k| !k.contains('_')).collect();
    names.sort();
    names.dedup();
    names
}

/// The path percent-decoded, each segment re-encoded, with a trailing `/`.
pub fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Query pairs sorted, then each name and value encoded, joined by `&`. A client sends its query
/// string in exactly this form so that what the server sees is what was signed.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Lower-case hex SHA-256.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A header value trimmed as the SDK trims it (Python's `str.strip()`): Unicode white space and the
/// separators U+001C to U+001F.
fn sdk_trim(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// The last line of the canonical request, as the SDK's `_process_hash_payload` computes it:
/// - an empty body hashes as the empty string, whatever `X-Sdk-Content-Sha256` says;
/// - otherwise a non-blank `X-Sdk-Content-Sha256` (e.g. `UNSIGNED-PAYLOAD`) is taken as it is, trimmed,
///   and with its UTF-8 bytes read back as Latin-1 characters, as the SDK leaves every header value
///   before it reads this one (no change for ASCII);
/// - otherwise the body's hash.
pub fn payload_hash(headers: &[(String, String)], body: &[u8]) -> String {
    if body.is_empty() {
        return hex_sha256(b"");
    }
    match header(headers, CONTENT_SHA256_HEADER).map(sdk_trim).filter(|v| !v.is_empty()) {
        Some(value) => value.bytes().map(char::from).collect(),
        None => hex_sha256(body),
    }
}

/// The canonical request over the given signed headers (names lower-case). A signed header that is
/// absent from the request contributes an empty value, so a verifier fails rather than panics.
pub fn canonical_request(req: &Request<'_>, signed_headers: &[String]) -> String {
    let headers: String = signed_headers
        .iter()
        .map(|name| format!("{name}:{}\n", sdk_trim(header(req.headers, name).unwrap_or(""))))
        .collect();
    let payload_hash = payload_hash(req.headers, req.body);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        signed_headers.join(";"),
        payload_hash
    )
}

/// `SDK-HMAC-SHA256\n<date>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(canonical_request: &str, sdk_date: &str) -> String {
    format!("{ALGORITHM}\n{sdk_date}\n{}", hex_sha256(canonical_request.as_bytes()))
}

/// HMAC-SHA256 keyed with `secret_key`. HMAC (RFC 2104) first hashes a key longer than the hash's
/// block and pads every key with zeros to the block; doing that here gives a block-sized key for the
/// infallible constructor, so no length check is left to fail.
fn hmac_sha256(secret_key: &[u8]) -> Hmac<Sha256> {
    let mut block = Key::<Hmac<Sha256>>::default();
    let hashed;
    let key = if secret_key.len() > block.len() {
        hashed = Sha256::digest(secret_key);
        hashed.as_slice()
    } else {
        secret_key
    };
    block.iter_mut().zip(key).for_each(|(slot, byte)| *slot = *byte);
    <Hmac<Sha256> as KeyInit>::new(&block)
}

/// Lower-case hex HMAC-SHA256 of the string to sign keyed with the secret key.
pub fn signature(secret_key: &[u8], string_to_sign: &str) -> String {
    let mut mac = hmac_sha256(secret_key);
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Signs a request whose headers already carry `Host` and `X-Sdk-Date` (`sdk_date`).
pub fn authorize(req: &Request<'_>, access_key: &str, secret_key: &[u8], sdk_date: &str) -> Authorization {
    let signed_headers = signed_header_names(req.headers);
    let canonical = canonical_request(req, &signed_headers);
    Authorization {
        access_key: access_key.to_string(),
        signature: signature(secret_key, &string_to_sign(&canonical, sdk_date)),
        signed_headers,
    }
}

/// Checks a signature in constant time against the one computed for `req` with the header list the
/// client declared.
pub fn verify(req: &Request<'_>, auth: &Authorization, secret_key: &[u8], sdk_date: &str) -> bool {
    let canonical = canonical_request(req, &auth.signed_headers);
    let mut mac = hmac_sha256(secret_key);
    mac.update(string_to_sign(&canonical, sdk_date).as_bytes());
    match hex::decode(&auth.signature) {
        Ok(expected) => mac.verify_slice(&expected).is_ok(),
        Err(_) => false,
    }
}

/// The requests the official SDK signed (`tests/data/signing-vectors.json`), for tests here and in
/// the emulator's verifier.
#[cfg(test)]
pub(crate) mod vectors {
    use super::DATE_HEADER;

    #[derive(serde::Deserialize)]
    pub(crate) struct Vector {
        pub method: String,
        pub host: String,
        pub path: String,
        pub query: Vec<(String, String)>,
        pub headers_in: std::collections::BTreeMap<String, String>,
        pub x_sdk_date: String,
        pub ak: String,
        pub sk: String,
        pub authorization: String,
        pub uri: String,
    }

    pub(crate) const VECTORS: &str = include_str!("../../tests/data/signing-vectors.json");

    pub(crate) fn vectors() -> Vec<Vector> {
        serde_json::from_str(VECTORS).expect("signing vectors parse")
    }

    /// The vector's headers plus `Host` and `X-Sdk-Date`, as signed.
    pub(crate) fn headers_of(v: &Vector) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> =
            v.headers_in.iter().map(|(k, val)| (k.clone(), val.clone())).collect();
        headers.push(("Host".into(), v.host.clone()));
        headers.push((DATE_HEADER.into(), v.x_sdk_date.clone()));
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use vectors::{VECTORS, headers_of, vectors};

    #[test]
    fn reproduces_every_sdk_vector() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 5);
        for v in &vectors {
            let headers = headers_of(v);
            let req =
                Request { method: &v.method, path: &v.path, query: &v.query, headers: &headers, body: b"" };
            let auth = authorize(&req, &v.ak, v.sk.as_bytes(), &v.x_sdk_date);
            assert_eq!(auth.header_value(), v.authorization, "{} {}", v.method, v.path);
            assert!(verify(
                &req,
                &Authorization::parse(&v.authorization).unwrap(),
                v.sk.as_bytes(),
                &v.x_sdk_date
            ));
            let query = canonical_query(&v.query);
            let sent = if query.is_empty() { v.path.clone() } else { format!("{}?{query}", v.path) };
            assert_eq!(sent, v.uri, "the query is sent in canonical order");
        }
    }

    #[test]
    fn vector_copy_matches_the_reference_when_present() {
        let outside = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference/signing-vectors.json");
        if let Ok(reference) = std::fs::read_to_string(outside) {
            assert_eq!(reference, VECTORS, "tests/data/signing-vectors.json drifted from {outside}");
        }
    }

    #[test]
    fn any_change_breaks_the_signature() {
        for v in vectors() {
            let headers = headers_of(&v);
            let auth = Authorization::parse(&v.authorization).unwrap();
            let base =
                Request { method: &v.method, path: &v.path, query: &v.query, headers: &headers, body: b"" };
            let sk = v.sk.as_bytes();
            assert!(!verify(&Request { method: "PUT", ..base }, &auth, sk, &v.x_sdk_date));
            assert!(!verify(&Request { path: "/v1/other", ..base }, &auth, sk, &v.x_sdk_date));
            let extra_query = [v.query.clone(), vec![("x".into(), "1".into())]].concat();
            assert!(!verify(&Request { query: &extra_query, ..base }, &auth, sk, &v.x_sdk_date));
            assert!(!verify(&Request { body: b"{}", ..base }, &auth, sk, &v.x_sdk_date));
            assert!(!verify(&base, &auth, sk, "20261122T053001Z"));
            assert!(!verify(&base, &auth, b"wrong", &v.x_sdk_date));
            let tampered: Vec<(String, String)> =
                headers
                    .iter()
                    .map(|(k, val)| {
                        if k == "X-Project-Id" {
                            (k.clone(), "0".repeat(32))
                        } else {
                            (k.clone(), val.clone())
                        }
                    })
                    .collect();
            assert!(!verify(&Request { headers: &tampered, ..base }, &auth, sk, &v.x_sdk_date));
        }
    }

    #[test]
    fn canonical_uri_edge_cases() {
        assert_eq!(canonical_uri("/v1/p/task-center"), "/v1/p/task-center/");
        assert_eq!(canonical_uri("/v1/p/"), "/v1/p/");
        assert_eq!(canonical_uri("/a b/c+d/e~f"), "/a%20b/c%2Bd/e~f/");
        assert_eq!(canonical_uri("/a%20b/c%2Fd"), "/a%20b/c/d/", "an encoded slash splits after decoding");
        assert_eq!(canonical_uri("/名字/é"), "/%E5%90%8D%E5%AD%97/%C3%A9/");
        assert_eq!(canonical_uri("/%E5%90%8D"), "/%E5%90%8D/");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn canonical_query_edge_cases() {
        let q = |pairs: &[(&str, &str)]| {
            canonical_query(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
        };
        assert_eq!(q(&[]), "");
        assert_eq!(q(&[("b", "2"), ("a", "1")]), "a=1&b=2");
        assert_eq!(q(&[("a", "2"), ("a", "1")]), "a=1&a=2", "repeated names sort by value");
        assert_eq!(q(&[("name", "a b+c/d~e")]), "name=a%20b%2Bc%2Fd~e");
        assert_eq!(q(&[("n", "名")]), "n=%E5%90%8D");
        assert_eq!(q(&[("flag", "true")]), "flag=true");
        assert_eq!(q(&[("k", "")]), "k=");
    }

    #[test]
    fn signed_headers_skip_underscores_and_sort() {
        let headers: Vec<(String, String)> = [("X-B", "1"), ("Host", "h"), ("x_under", "2"), ("x-a", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(signed_header_names(&headers), ["host", "x-a", "x-b"]);
    }

    #[test]
    fn header_values_are_trimmed_and_content_sha_overrides_body() {
        let headers: Vec<(String, String)> =
            [("Host", "  h\u{1c}"), (CONTENT_SHA256_HEADER, " UNSIGNED-PAYLOAD\t")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let req = Request { method: "get", path: "/", query: &[], headers: &headers, body: b"ignored" };
        let canonical = canonical_request(&req, &signed_header_names(&headers));
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:h\nx-sdk-content-sha256:UNSIGNED-PAYLOAD\n\nhost;x-sdk-content-sha256\nUNSIGNED-PAYLOAD"
        );
        let empty = Request { body: b"", ..req };
        let canonical = canonical_request(&empty, &signed_header_names(&headers));
        assert!(canonical.contains("\nx-sdk-content-sha256:UNSIGNED-PAYLOAD\n"), "still signed as a header");
        assert!(
            canonical.ends_with(&format!("\n{EMPTY_SHA256}")),
            "an empty body ignores the header: {canonical}"
        );
    }

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn payload_hash_follows_the_sdk() {
        let with = |value: &str| vec![("x-SDK-content-sha256".to_string(), value.to_string())];
        let body_hash = hex_sha256(b"{}");
        assert_eq!(payload_hash(&[], b""), EMPTY_SHA256);
        assert_eq!(payload_hash(&[], b"{}"), body_hash);
        assert_eq!(payload_hash(&with("UNSIGNED-PAYLOAD"), b""), EMPTY_SHA256);
        assert_eq!(payload_hash(&with("UNSIGNED-PAYLOAD"), b"{}"), "UNSIGNED-PAYLOAD");
        assert_eq!(payload_hash(&with("  abc\t"), b"{}"), "abc");
        assert_eq!(payload_hash(&with(""), b"{}"), body_hash, "an empty value counts as absent");
        assert_eq!(payload_hash(&with(" \t "), b"{}"), body_hash, "so does a blank one");
        assert_eq!(payload_hash(&with("é"), b"{}"), "\u{c3}\u{a9}", "UTF-8 bytes read as Latin-1");
    }

    /// RFC 4231 test cases 1, 2, 6 and 7 (keys of 20, 4, 131 and 131 bytes), and a key of exactly one
    /// block, against the length-checked constructor.
    #[test]
    fn hmac_matches_rfc_4231_for_every_key_length() {
        let long_key = [0xaa_u8; 131];
        let cases: [(&[u8], &str, &str); 4] = [
            (&[0x0b; 20], "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (
                b"Jefe",
                "what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &long_key,
                "Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &long_key,
                "This is a test using a larger than block-size key and a larger than block-size data. \
                 The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(signature(key, data), expected, "key of {} bytes", key.len());
        }
        for len in [0, 1, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
            reference.update(b"data");
            assert_eq!(
                signature(&key, "data"),
                hex::encode(reference.finalize().into_bytes()),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn sdk_dates_round_trip() {
        let t = parse_sdk_date("20261122T053000Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T05:30:00Z");
        assert_eq!(format_sdk_date(t), "20261122T053000Z");
        assert!(parse_sdk_date("2026-11-22T05:30:00Z").is_err());
        assert!(parse_sdk_date("").is_err());
    }

    #[test]
    fn authorization_parses_and_rejects() {
        let a =
            Authorization::parse("SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=ab")
                .unwrap();
        assert_eq!(a.access_key, "AK");
        assert_eq!(a.signed_headers, ["host", "x-sdk-date"]);
        assert_eq!(a.signature, "ab");
        assert_eq!(Authorization::parse("AWS4 Access=AK"), Err(SigningError::UnknownAlgorithm));
        assert_eq!(
            Authorization::parse("SDK-HMAC-SHA256 Access=AK, Signature=ab"),
            Err(SigningError::MissingField("SignedHeaders"))
        );
    }
}
