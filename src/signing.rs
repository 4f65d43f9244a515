//! Request signatures of the three cloud APIs nicip speaks.
//!
//! These are pure functions over the bytes that go on the wire, shared by the
//! cloud clients (which sign) and the simulated cloud (which verifies by
//! signing again and comparing in constant time). Each is pinned by the test
//! vectors that were computed with the vendors' official SDKs.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Compares two signatures without leaking, through timing, how long a
/// prefix of a forged signature was right.
pub fn signatures_match(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Zenlayer Cloud API 2.0 `ZC2-HMAC-SHA256`.
pub mod zc2 {
    use super::{hmac_sha256, sha256_hex};

    pub const ALGORITHM: &str = "ZC2-HMAC-SHA256";
    pub const SIGNED_HEADERS: &str = "content-type;host";

    /// The lowercase hex signature of one request. The canonical URI is always
    /// `/` whatever the path, and the secret is the HMAC key as is (no key
    /// derivation), as the SDKs do.
    pub fn signature(
        secret: &str,
        timestamp: i64,
        content_type: &str,
        host: &str,
        body: &[u8],
    ) -> String {
        let canonical = format!(
            "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{SIGNED_HEADERS}\n{}",
            sha256_hex(body)
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{timestamp}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        hex::encode(hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()))
    }

    /// The `Authorization` header value for `signature`.
    pub fn authorization(key_id: &str, signature: &str) -> String {
        format!(
            "{ALGORITHM} Credential={key_id}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
        )
    }
}

/// Tencent Cloud API 3.0 `TC3-HMAC-SHA256`.
pub mod tc3 {
    use super::{hmac_sha256, sha256_hex};

    pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

    /// What one TC3 signature covers.
    #[derive(Debug, Clone, Copy)]
    pub struct Request<'a> {
        /// `POST` or `GET`.
        pub method: &'a str,
        /// The raw query string (GET), empty for POST.
        pub canonical_query: &'a str,
        /// Signed headers as (name, value) pairs in any order; names and
        /// values are lower-cased and values trimmed, as the algorithm says.
        pub headers: &'a [(&'a str, &'a str)],
        /// Lowercase hex SHA-256 of the body (of the empty string for GET,
        /// of `UNSIGNED-PAYLOAD` when that header is sent).
        pub payload_hash: &'a str,
        /// The product, e.g. `vpc`.
        pub service: &'a str,
        /// Unix seconds, as sent in `X-TC-Timestamp`.
        pub timestamp: i64,
    }

    /// UTC `YYYY-MM-DD` of a Unix timestamp; `None` when out of range.
    pub fn date_of(timestamp: i64) -> Option<String> {
        let ts = jiff::Timestamp::from_second(timestamp).ok()?;
        Some(ts.strftime("%Y-%m-%d").to_string())
    }

    /// The `SignedHeaders` value for these headers.
    pub fn signed_headers(headers: &[(&str, &str)]) -> String {
        let mut names: Vec<String> = headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        names.join(";")
    }

    /// The lowercase hex signature; `None` when the timestamp has no date.
    pub fn signature(secret_key: &str, req: &Request<'_>) -> Option<String> {
        let date = date_of(req.timestamp)?;
        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
            .collect();
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let canonical = format!(
            "{}\n/\n{}\n{canonical_headers}\n{}\n{}",
            req.method,
            req.canonical_query,
            signed_headers(req.headers),
            req.payload_hash
        );
        let scope = format!("{date}/{}/tc3_request", req.service);
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            req.timestamp,
            sha256_hex(canonical.as_bytes())
        );
        let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
        let secret_service = hmac_sha256(&secret_date, req.service.as_bytes());
        let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
        Some(hex::encode(hmac_sha256(
            &secret_signing,
            string_to_sign.as_bytes(),
        )))
    }

    /// The `Authorization` header value.
    pub fn authorization(secret_id: &str, req: &Request<'_>, signature: &str) -> Option<String> {
        let date = date_of(req.timestamp)?;
        Some(format!(
            "{ALGORITHM} Credential={secret_id}/{date}/{}/tc3_request, SignedHeaders={}, Signature={signature}",
            req.service,
            signed_headers(req.headers)
        ))
    }
}

/// The query-string signature shared by Tencent API 3.0 "signature v1" and the
/// legacy API 2.0: sorted raw `name=value` pairs after `METHOD host path ?`,
/// HMAC-SHA1 or HMAC-SHA256 with the secret key, base64.
pub mod query {
    use super::{hmac_sha1, hmac_sha256};
    use base64::Engine as _;

    /// `SignatureMethod`: anything but exactly `HmacSHA256` means HmacSHA1.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Method {
        HmacSha1,
        HmacSha256,
    }

    impl Method {
        pub fn from_param(value: Option<&str>) -> Self {
            match value {
                Some("HmacSHA256") => Method::HmacSha256,
                _ => Method::HmacSha1,
            }
        }

        pub fn as_param(self) -> &'static str {
            match self {
                Method::HmacSha1 => "HmacSHA1",
                Method::HmacSha256 => "HmacSHA256",
            }
        }
    }

    /// The string the signature covers. `Signature` itself is left out and
    /// `_` in names becomes `.`, as the servers reconstruct dotted names.
    pub fn string_to_sign<'a>(
        http_method: &str,
        host: &str,
        path: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut pairs: Vec<(String, &str)> = params
            .into_iter()
            .filter(|(name, _)| *name != "Signature")
            .map(|(name, value)| (name.replace('_', "."), value))
            .collect();
        pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{http_method}{host}{path}?{}", joined.join("&"))
    }

    /// Base64 of the HMAC of `string_to_sign` (not yet URL-encoded).
    pub fn signature(secret_key: &str, method: Method, string_to_sign: &str) -> String {
        let mac = match method {
            Method::HmacSha1 => hmac_sha1(secret_key.as_bytes(), string_to_sign.as_bytes()),
            Method::HmacSha256 => hmac_sha256(secret_key.as_bytes(), string_to_sign.as_bytes()),
        };
        base64::engine::general_purpose::STANDARD.encode(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZL_KEY: &str = "TestSecretKeyExample/0001+abc";

    #[test]
    fn zc2_vectors() {
        let cases: &[(&str, i64, &str, &str, &str, &str)] = &[
            // TV-1: Python SDK spacing.
            (
                ZL_KEY,
                1700000000,
                "application/json",
                "console.zenlayer.com",
                r#"{"nicId": "nic-abc123", "ipAddresses": ["10.0.0.3", "10.0.0.4"]}"#,
                "d84fca4c983a98deb913802d791813d1cc800f28f4b82b4e0e884d3b0adedf49",
            ),
            // TV-2
            (
                ZL_KEY,
                1735689600,
                "application/json",
                "console.zenlayer.com",
                r#"{"nicIds": ["nic-abc123"], "pageSize": 100, "pageNum": 1}"#,
                "2b4242c5dcc1c7b9265182a900679d55e436a888ea003d89f966adf394f81de0",
            ),
            // TV-3: simulator host with port, empty object.
            (
                "my-access-key-password",
                1712345678,
                "application/json",
                "127.0.0.1:18080",
                "{}",
                "194d15aec7044f135dfff6d18e0eef57ead48f7c03d46589e58e989dd76c89f1",
            ),
            // TV-4: compact serde_json body.
            (
                ZL_KEY,
                1700000000,
                "application/json",
                "console.zenlayer.com",
                r#"{"nicId":"nic-abc123","ipAddresses":["10.0.0.3","10.0.0.4"]}"#,
                "8f277a359e1a31c7538d63890fdd9a14aa3b26926df8a9345996f8b7d517aaa1",
            ),
            // TV-5
            (
                ZL_KEY,
                1700000000,
                "application/json",
                "console.zenlayer.com",
                r#"{"nicId":"nic-abc123","instanceId":"ins-xyz789"}"#,
                "f093e184912462831b3563db9f19a06b25d6bd426a5d44745ae4e7ecb8c73c7f",
            ),
            // TV-6: the documentation's worked example, charset in the content type.
            (
                "Gu5t9xGARNpq86cd98joQYCN3",
                1673361177,
                "application/json; charset=utf-8",
                "console.zenlayer.com",
                r#"{"pageSize":10,"pageNum":1,"zoneId":"HKG-A"}"#,
                "efb356c32e55c781e10dc676da59462c22596d82e91c57803666243379555b2f",
            ),
            // TV-7
            (
                "sim-key-secret",
                1767225600,
                "application/json",
                "127.0.0.1:18080",
                "{}",
                "ffccc2b7a431bc5312b5fd93df279803834fa6ea5ad99d3542c87fb656144b8e",
            ),
        ];
        for (secret, ts, ct, host, body, want) in cases {
            assert_eq!(
                zc2::signature(secret, *ts, ct, host, body.as_bytes()),
                *want,
                "body {body}"
            );
        }
        assert_eq!(
            zc2::authorization("AKIDTESTEXAMPLE0001", "8f27"),
            "ZC2-HMAC-SHA256 Credential=AKIDTESTEXAMPLE0001, SignedHeaders=content-type;host, Signature=8f27"
        );
    }

    #[test]
    fn zc2_signature_covers_content_type_and_body() {
        let body = br#"{"pageSize":10,"pageNum":1,"zoneId":"HKG-A"}"#;
        let secret = "Gu5t9xGARNpq86cd98joQYCN3";
        let sig = zc2::signature(
            secret,
            1673361177,
            "application/json",
            "console.zenlayer.com",
            body,
        );
        assert!(sig.starts_with("9fdd5117d611874c"), "{sig}");
        let spaced = br#"{"pageSize": 10, "pageNum": 1, "zoneId": "HKG-A"}"#;
        let sig = zc2::signature(
            secret,
            1673361177,
            "application/json; charset=utf-8",
            "console.zenlayer.com",
            spaced,
        );
        assert!(sig.starts_with("3b0b3c188c53fb1c"), "{sig}");
    }

    const TC_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const TC_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

    fn tc3_auth(
        method: &str,
        query: &str,
        content_type: &str,
        host: &str,
        body: &[u8],
        service: &str,
        ts: i64,
    ) -> String {
        let payload_hash = sha256_hex(body);
        let headers = [("Content-Type", content_type), ("Host", host)];
        let req = tc3::Request {
            method,
            canonical_query: query,
            headers: &headers,
            payload_hash: &payload_hash,
            service,
            timestamp: ts,
        };
        let sig = tc3::signature(TC_KEY, &req).unwrap();
        tc3::authorization(TC_ID, &req, &sig).unwrap()
    }

    #[test]
    fn tc3_vectors() {
        let ct = "application/json";
        let host = "vpc.tencentcloudapi.com";
        let cases: &[(String, &str)] = &[
            // O1: the documentation's cvm example.
            (
                tc3_auth(
                    "POST",
                    "",
                    "application/json; charset=utf-8",
                    "cvm.tencentcloudapi.com",
                    br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
                    "cvm",
                    1551113065,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
            ),
            // V1
            (
                tc3_auth(
                    "POST",
                    "",
                    ct,
                    host,
                    br#"{"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 2, "ClientToken": "nic-claim-0001"}"#,
                    "vpc",
                    1551113065,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, SignedHeaders=content-type;host, Signature=56071861d33a107e1a42ca79bb2ee4be3643c0aa9637cbceb56e9fe89e4d3c49",
            ),
            // V2: intl host; the session token is not signed.
            (
                tc3_auth(
                    "POST",
                    "",
                    ct,
                    "vpc.intl.tencentcloudapi.com",
                    br#"{"Filters": [{"Name": "attachment.instance-id", "Values": ["ins-3nqpdn3i"]}], "Offset": 0, "Limit": 100}"#,
                    "vpc",
                    1700000000,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/vpc/tc3_request, SignedHeaders=content-type;host, Signature=1f8e8a2c6d2c6d6d580740bb8ee037b7cb7a7655178a1ce0efa4dcdb8cb1829a",
            ),
            // V3: GET with the query signed.
            (
                tc3_auth(
                    "GET",
                    "TaskId=f23d1450-ed00-4442-98d4-be409e625e6c",
                    "application/x-www-form-urlencoded",
                    host,
                    b"",
                    "vpc",
                    1712345678,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2024-04-05/vpc/tc3_request, SignedHeaders=content-type;host, Signature=7574e35434f40fa232cd55989d0c483bf282c294c507ca901ae85f27f4d93839",
            ),
            // V4
            (
                tc3_auth(
                    "POST",
                    "",
                    ct,
                    host,
                    br#"{"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.32.237"}, {"PrivateIpAddress": "172.16.32.84"}]}"#,
                    "vpc",
                    1551113065,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, SignedHeaders=content-type;host, Signature=0b5ac9e760a13dcb5ce42bf8bdf6280bac6b8eed62d54de629d85577a59b5b8f",
            ),
            // V5: compact JSON.
            (
                tc3_auth(
                    "POST",
                    "",
                    ct,
                    host,
                    br#"{"NetworkInterfaceId":"eni-m6dyj72l","SecondaryPrivateIpAddressCount":2,"ClientToken":"nic-claim-0001"}"#,
                    "vpc",
                    1551113065,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, SignedHeaders=content-type;host, Signature=78ec0ce641cc0231e5a925d1789b529626ba5dd82a84f27108174d79cb277036",
            ),
            // V6: charset suffix.
            (
                tc3_auth(
                    "POST",
                    "",
                    "application/json; charset=utf-8",
                    host,
                    br#"{"TaskId":"f23d1450-ed00-4442-98d4-be409e625e6c"}"#,
                    "vpc",
                    1712345678,
                ),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2024-04-05/vpc/tc3_request, SignedHeaders=content-type;host, Signature=9bbc6d733633462f3f6448e6700311b6a25f25d2c53eadc7420e2995d6e1df6b",
            ),
            // V7: last second of a UTC day.
            (
                tc3_auth("POST", "", ct, host, b"{}", "vpc", 1700006399),
                "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/vpc/tc3_request, SignedHeaders=content-type;host, Signature=0f84404d45b2bb9fefc6344fd4679e85bece12e8f56709a615f79ba6539fd15f",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn tc3_extra_signed_header_values_are_lowercased() {
        // O2: the newer doc variant also signs x-tc-action.
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let payload_hash = sha256_hex(body);
        let headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Host", "cvm.tencentcloudapi.com"),
            ("X-TC-Action", "DescribeInstances"),
        ];
        let req = tc3::Request {
            method: "POST",
            canonical_query: "",
            headers: &headers,
            payload_hash: &payload_hash,
            service: "cvm",
            timestamp: 1551113065,
        };
        assert_eq!(
            tc3::signature(TC_KEY, &req).unwrap(),
            "644be983de9a8a3f00db8eadaba61467c3b429e2215758ba897b738ca469fd26"
        );
        assert_eq!(
            tc3::signed_headers(&headers),
            "content-type;host;x-tc-action"
        );
    }

    fn split(qs: &str) -> Vec<(&str, &str)> {
        qs.split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .collect()
    }

    #[test]
    fn query_signature_vectors() {
        use query::Method::*;
        let legacy_key = "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA";
        let cases: &[(&str, &str, &str, &str, &str, query::Method, &str)] = &[
            // O3: API 3.0 signature v1, SignatureMethod absent means HmacSHA1.
            (
                "GET",
                "cvm.tencentcloudapi.com",
                "/",
                "Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Limit=20&Nonce=11886&Offset=0&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&Timestamp=1465185768&Version=2017-03-12",
                TC_KEY,
                HmacSha1,
                "EliP9YW3pW28FpsEdkXt/+WcGeI=",
            ),
            // O4: API 2.0, `instanceIds_0` is signed as `instanceIds.0`.
            (
                "GET",
                "cvm.api.qcloud.com",
                "/v2/index.php",
                "Action=DescribeInstances&Nonce=11886&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&Timestamp=1465185768&instanceIds_0=ins-09dx96dg&limit=20&offset=0",
                legacy_key,
                HmacSha1,
                "NSI3UqqD99b/UJb4tbG/xZpRW64=",
            ),
            // O5
            (
                "GET",
                "cvm.api.qcloud.com",
                "/v2/index.php",
                "Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&SignatureMethod=HmacSHA256&Timestamp=1465185768",
                legacy_key,
                HmacSha256,
                "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s=",
            ),
            // W1: parameters in wire (unsorted) order.
            (
                "POST",
                "vpc.tencentcloudapi.com",
                "/",
                "NetworkInterfaceId=eni-m6dyj72l&PrivateIpAddresses.0.PrivateIpAddress=10.0.0.6&PrivateIpAddresses.1.PrivateIpAddress=10.0.0.7&Action=AssignPrivateIpAddresses&Nonce=11886&Timestamp=1465185768&Version=2017-03-12&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1",
                TC_KEY,
                HmacSha1,
                "PC761u/xPUfD0LWcZhbJuyAgP10=",
            ),
            // W2
            (
                "GET",
                "vpc.tencentcloudapi.com",
                "/",
                "Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-m6dyj72l&Nonce=11886&PrivateIpAddresses.0.PrivateIpAddress=10.0.0.6&PrivateIpAddresses.1.PrivateIpAddress=10.0.0.7&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Timestamp=1465185768&Version=2017-03-12",
                TC_KEY,
                HmacSha256,
                "h1LI3qVA8HO4FvhiJHArUiK2la+S6VW4gthw+O6sOOY=",
            ),
            // W3: what the Python SDK sends in v1 mode, token signed.
            (
                "POST",
                "vpc.tencentcloudapi.com",
                "/",
                "NetworkInterfaceId=eni-m6dyj72l&SecondaryPrivateIpAddressCount=2&Action=AssignPrivateIpAddresses&RequestClient=SDK_PYTHON_3.1.193&Nonce=11886&Timestamp=1465185768&Version=2017-03-12&Region=ap-guangzhou&Token=tmp-session-token-EXAMPLE&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Language=en-US",
                TC_KEY,
                HmacSha256,
                "x/GrAFgUQnjG+JaKgAbFuVC3LWr1pH3XwWWYiBS+nJY=",
            ),
            // X1: legacy VPC host.
            (
                "GET",
                "vpc.api.qcloud.com",
                "/v2/index.php",
                "Action=AssignPrivateIpAddresses&Nonce=11886&Timestamp=1465185768&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1&vpcId=vpc-7t9nf3pu&networkInterfaceId=eni-m6dyj72l&secondaryPrivateIpAddressCount=1",
                TC_KEY,
                HmacSha1,
                "AgZ2NSOGr7XZmXDHlkxBcJRYdis=",
            ),
            // X2
            (
                "GET",
                "vpc.api.qcloud.com",
                "/v2/index.php",
                "Action=AssignPrivateIpAddresses&Nonce=11886&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Timestamp=1465185768&networkInterfaceId=eni-m6dyj72l&privateIpAddressSet.0.primary=false&privateIpAddressSet.0.privateIpAddress=10.0.0.6&vpcId=vpc-7t9nf3pu",
                TC_KEY,
                HmacSha256,
                "F/CSucUtVe3lwGBxaeByM1BlFLMixvfjJNpu3y9JHPA=",
            ),
            // X3: POST form body.
            (
                "POST",
                "vpc.api.qcloud.com",
                "/v2/index.php",
                "Action=AssignPrivateIpAddresses&Nonce=11886&Timestamp=1465185768&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1&vpcId=vpc-7t9nf3pu&networkInterfaceId=eni-m6dyj72l&secondaryPrivateIpAddressCount=2",
                TC_KEY,
                HmacSha1,
                "FWtzs64KKAfeqkjb22AMrSu262E=",
            ),
        ];
        for (method, host, path, params, key, alg, want) in cases {
            let sts = query::string_to_sign(method, host, path, split(params));
            assert_eq!(query::signature(key, *alg, &sts), *want, "{sts}");
        }
    }

    #[test]
    fn query_signature_ignores_the_signature_parameter_and_sorts_bytewise() {
        let sts = query::string_to_sign(
            "GET",
            "h",
            "/",
            [("b", "1"), ("Signature", "x"), ("A", "2")],
        );
        assert_eq!(sts, "GETh/?A=2&b=1");
        assert_eq!(
            query::Method::from_param(Some("HmacSHA256")),
            query::Method::HmacSha256
        );
        assert_eq!(
            query::Method::from_param(Some("hmacsha256")),
            query::Method::HmacSha1
        );
        assert_eq!(query::Method::from_param(None), query::Method::HmacSha1);
    }

    #[test]
    fn constant_time_compare() {
        assert!(signatures_match("abc", "abc"));
        assert!(!signatures_match("abc", "abd"));
        assert!(!signatures_match("abc", "ab"));
    }
}
