//! AWS Signature Version 4, the server's side: parse the `Authorization` header, rebuild the
//! canonical request and compare signatures. Pure: the caller passes the request's parts, the
//! secret it looked up and the current time.
//!
//! The body is covered: its SHA-256 is the canonical request's last line. A request that
//! declares it (`X-Amz-Content-Sha256`) can have its head verified before the body is read
//! (`verify_head`); the body must then hash to the declared value (`check_body`). Without
//! the header the verifier hashes the body itself (`verify`).

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Largest clock skew accepted between the signer and us, as AWS: 15 minutes.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("the request is not signed (no AWS4-HMAC-SHA256 Authorization header)")]
    Missing,
    #[error("the Authorization header is malformed: {0}")]
    Malformed(String),
    #[error("the X-Amz-Date header is missing or malformed")]
    BadDate,
    #[error("the request time is more than 15 minutes away from the server's time")]
    Skewed,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the body does not match the X-Amz-Content-Sha256 it was signed with")]
    BodyMismatch,
    #[error("the body must be signed: X-Amz-Content-Sha256 must be its SHA-256 in hex (UNSIGNED-PAYLOAD and streaming payloads are not accepted)")]
    UnsignedPayload,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    pub fn parse(header: &str) -> Result<Self, SigV4Error> {
        let rest = header
            .trim()
            .strip_prefix("AWS4-HMAC-SHA256")
            .ok_or(SigV4Error::Missing)?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            match k.trim() {
                "Credential" => credential = Some(v.trim()),
                "SignedHeaders" => signed = Some(v.trim()),
                "Signature" => signature = Some(v.trim()),
                _ => {}
            }
        }
        let malformed = |m: &str| SigV4Error::Malformed(m.to_string());
        let credential = credential.ok_or_else(|| malformed("no Credential"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        if scope.len() != 5 || scope[4] != "aws4_request" {
            return Err(malformed(
                "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
            ));
        }
        let signed_headers: Vec<String> = signed
            .ok_or_else(|| malformed("no SignedHeaders"))?
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(malformed("the host header must be signed"));
        }
        let signature = signature.ok_or_else(|| malformed("no Signature"))?;
        if signature.len() != 64 || !signature.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed("Signature must be 64 hex digits"));
        }
        Ok(Self {
            access_key_id: scope[0].to_string(),
            date: scope[1].to_string(),
            region: scope[2].to_string(),
            service: scope[3].to_string(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }

    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// A request's head as the verifier needs it. Header names may be in any case; a name that
/// repeats appears once per value, in order.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a [(String, String)],
}

/// Headers that must be signed when a request carries them: `host` (checked when parsing)
/// and the operation, so a captured request cannot be replayed as another operation.
const MUST_SIGN: &[&str] = &["x-amz-target"];

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it (unreserved characters kept).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request (the first step of SigV4), for a body whose SHA-256 (hex) is
/// `payload_hash`.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let path = if req.path.is_empty() { "/" } else { req.path };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(&percent_decode(path), true),
        canonical_query(req.query),
        headers,
        signed_headers.join(";"),
        payload_hash
    )
}

/// The signature of a request under a scope, as a client computes it.
pub fn sign(secret: &str, auth: &Authorization, amz_date: &str, canonical: &str) -> String {
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        auth.scope(),
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

fn header<'a>(req: &'a SignedRequest<'_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The body's SHA-256 the request declares in `X-Amz-Content-Sha256`, if it does. A value
/// that is not a SHA-256 (`UNSIGNED-PAYLOAD`, streaming) is refused: the body must be covered.
pub fn declared_payload_hash(req: &SignedRequest<'_>) -> Result<Option<String>, SigV4Error> {
    match header(req, "x-amz-content-sha256") {
        None => Ok(None),
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(v.to_ascii_lowercase()))
        }
        Some(_) => Err(SigV4Error::UnsignedPayload),
    }
}

/// Checks what can be checked before the signature: the date (present, the credential's,
/// within `MAX_SKEW_SECONDS` of `now`) and that the headers that must be signed are.
/// Returns the request's `X-Amz-Date`.
pub fn check_head<'a>(
    req: &'a SignedRequest<'_>,
    auth: &Authorization,
    now: DateTime<Utc>,
) -> Result<&'a str, SigV4Error> {
    let amz_date = header(req, "x-amz-date").ok_or(SigV4Error::BadDate)?;
    let when = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| SigV4Error::BadDate)?
        .and_utc();
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Malformed(
            "the credential's date is not the request's date".into(),
        ));
    }
    if (now - when).num_seconds().abs() > MAX_SKEW_SECONDS {
        return Err(SigV4Error::Skewed);
    }
    for name in MUST_SIGN {
        if header(req, name).is_some() && !auth.signed_headers.iter().any(|h| h == name) {
            return Err(SigV4Error::Malformed(format!(
                "the {name} header must be signed"
            )));
        }
    }
    Ok(amz_date)
}

/// Verifies the head of `req`, signed as `auth` says with `secret`, at `now`, for a body
/// whose SHA-256 is `payload_hash`. The caller must still make sure the body has that hash.
pub fn verify_head(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    secret: &str,
    now: DateTime<Utc>,
    payload_hash: &str,
) -> Result<(), SigV4Error> {
    let amz_date = check_head(req, auth, now)?;
    let canonical = canonical_request(req, &auth.signed_headers, payload_hash);
    let expected = sign(secret, auth, amz_date, &canonical);
    // Compare in constant time.
    let diff = expected
        .bytes()
        .zip(auth.signature.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 && expected.len() == auth.signature.len() {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

/// The body's SHA-256 (hex) must be the one the head was verified with.
pub fn check_body(payload_hash: &str, body_sha256_hex: &str) -> Result<(), SigV4Error> {
    if payload_hash.eq_ignore_ascii_case(body_sha256_hex) {
        Ok(())
    } else {
        Err(SigV4Error::BodyMismatch)
    }
}

/// Verifies a whole request: its head and its body.
pub fn verify(
    req: &SignedRequest<'_>,
    body: &[u8],
    auth: &Authorization,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let actual = sha256_hex(body);
    match declared_payload_hash(req)? {
        Some(declared) => {
            verify_head(req, auth, secret, now, &declared)?;
            check_body(&declared, &actual)
        }
        None => verify_head(req, auth, secret, now, &actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's published example (IAM ListUsers, "Create a signed AWS API request").
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn example_headers() -> Vec<(String, String)> {
        vec![
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            ),
            ("Host".into(), "iam.amazonaws.com".into()),
            ("X-Amz-Date".into(), "20150830T123600Z".into()),
        ]
    }

    fn example_auth(signature: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}")
    }

    const GOOD: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_request(headers: &[(String, String)]) -> SignedRequest<'_> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers,
        }
    }

    /// Four minutes after the example was signed.
    fn example_now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-08-30T12:40:00Z")
            .expect("date")
            .with_timezone(&Utc)
    }

    #[test]
    fn aws_example_verifies() {
        let headers = example_headers();
        let req = example_request(&headers);
        let auth = Authorization::parse(&example_auth(GOOD)).expect("parse");
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        let now = example_now();
        assert_eq!(verify(&req, b"", &auth, SECRET, now), Ok(()));
        assert_eq!(
            verify(&req, b"", &auth, "another secret", now),
            Err(SigV4Error::Mismatch)
        );
        // Another body under the same head: the signature covered the body's hash.
        assert_eq!(
            verify(&req, b"{}", &auth, SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        let tampered = SignedRequest {
            query: "Action=ListUsers&Version=2010-05-09",
            ..req.clone()
        };
        assert_eq!(
            verify(&tampered, b"", &auth, SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        let later = now + chrono::Duration::hours(1);
        assert_eq!(
            verify(&req, b"", &auth, SECRET, later),
            Err(SigV4Error::Skewed)
        );
    }

    #[test]
    fn a_declared_body_hash_binds_the_body() {
        let empty = sha256_hex(b"");
        let mut headers = example_headers();
        // An unsigned X-Amz-Content-Sha256 naming the signed body's hash: the head verifies
        // (the hash is the canonical request's last line), the other body does not.
        headers.push(("X-Amz-Content-Sha256".into(), empty.clone()));
        let req = example_request(&headers);
        let auth = Authorization::parse(&example_auth(GOOD)).expect("parse");
        let now = example_now();
        assert_eq!(declared_payload_hash(&req), Ok(Some(empty.clone())));
        assert_eq!(verify_head(&req, &auth, SECRET, now, &empty), Ok(()));
        assert_eq!(verify(&req, b"", &auth, SECRET, now), Ok(()));
        assert_eq!(
            verify(&req, b"{\"MessageBody\":\"evil\"}", &auth, SECRET, now),
            Err(SigV4Error::BodyMismatch)
        );
        assert_eq!(
            check_body(&empty, &sha256_hex(b"x")),
            Err(SigV4Error::BodyMismatch)
        );
        for unsigned in [
            "UNSIGNED-PAYLOAD",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "abc",
        ] {
            let mut h = example_headers();
            h.push(("x-amz-content-sha256".into(), unsigned.into()));
            let r = SignedRequest {
                headers: &h,
                ..req.clone()
            };
            assert_eq!(
                verify(&r, b"", &auth, SECRET, now),
                Err(SigV4Error::UnsignedPayload)
            );
        }
    }

    #[test]
    fn the_operation_must_be_signed() {
        let mut headers = example_headers();
        headers.push(("X-Amz-Target".into(), "AmazonSQS.PurgeQueue".into()));
        let req = example_request(&headers);
        let auth = Authorization::parse(&example_auth(GOOD)).expect("parse");
        let now = example_now();
        assert!(matches!(
            verify(&req, b"", &auth, SECRET, now),
            Err(SigV4Error::Malformed(_))
        ));
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(Authorization::parse("Bearer x"), Err(SigV4Error::Missing));
        assert!(matches!(
            Authorization::parse(
                "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00"
            ),
            Err(SigV4Error::Malformed(_))
        ));
        let no_host = example_auth(GOOD).replace("content-type;host;", "content-type;");
        assert!(matches!(
            Authorization::parse(&no_host),
            Err(SigV4Error::Malformed(_))
        ));
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~", true), "a%20b/c~");
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    }
}
