//! The one error type of the cloud layer, its classes and outcomes
//! (`docs/errors.md`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Provider;

/// What the controller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// The request (the claim's spec) is wrong: wait for a spec change.
    InvalidInput,
    /// The cloud cannot do it now or ever without a change elsewhere (quota,
    /// subnet full, wrong state that will not pass by itself).
    Terminal,
    /// Someone else holds the resource (address in use, NIC attached elsewhere).
    Conflict,
    /// The NIC, instance or binding does not exist. On release paths: done.
    NotFound,
    /// Rate limited: slow that action's limiter down and try again.
    Throttled,
    /// 5xx, timeouts, transport failures, transitional states: retry with backoff.
    Transient,
    /// Authentication or authorisation failed: retry slowly, flag the account.
    Credentials,
    /// The ProviderConfig is wrong (unsupported region, invalid endpoint): flag it, not the
    /// claims; retry after it changes.
    Configuration,
}

/// Whether a failed call may have acted in the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The request never left this process (refused before sending, no connection, the
    /// send deadline passed): nothing changed.
    NotSent,
    /// The cloud answered and refused it: nothing changed.
    Rejected,
    /// It may have acted (timeout, reset, lost response, a server error after sending):
    /// resolve it from the cloud's state before anything else.
    Unknown,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidInput => "InvalidInput",
            ErrorClass::Terminal => "Terminal",
            ErrorClass::Conflict => "Conflict",
            ErrorClass::NotFound => "NotFound",
            ErrorClass::Throttled => "Throttled",
            ErrorClass::Transient => "Transient",
            ErrorClass::Credentials => "Credentials",
            ErrorClass::Configuration => "Configuration",
        }
    }

    /// Whether repeating the same request later can succeed without any change.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Transient)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed cloud call. `code` is the cloud's code verbatim (or one of the
/// client-side codes of `docs/errors.md`, all starting with `Client.`, or the
/// Zenlayer SDK labels `SECURITY_CHALLENGE`/`REQUEST_BLOCKED`). Never carries
/// credentials: messages are the cloud's or built from non-secret parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} {action} failed: {code}: {message} (class {class}{})", http_suffix(.http_status, .request_id))]
pub struct CloudError {
    pub provider: Provider,
    pub action: String,
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
    pub class: ErrorClass,
    pub outcome: Outcome,
}

/// The most characters of a cloud's message kept in an error: what the
/// cloud says is untrusted input that ends up in logs, Events and status.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1024;
/// The same for a code or request id (the status keeps 128).
const MAX_CODE_CHARS: usize = 128;

/// A request (task) id from a successful answer, as the claim's status can
/// record it: an id longer than the status keeps is not one the cloud
/// issued, and recording it would make every status write fail. Without
/// it, the pending operation is resolved from the NIC's state.
pub(crate) fn request_id(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && id.chars().count() <= MAX_CODE_CHARS)
}

/// `text` cut to `max` characters (marked with `…`).
pub(crate) fn bounded(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn http_suffix(status: &Option<u16>, request_id: &Option<String>) -> String {
    let mut s = String::new();
    if let Some(status) = status {
        s.push_str(&format!(", HTTP {status}"));
    }
    if let Some(id) = request_id {
        s.push_str(&format!(", request id {id}"));
    }
    s
}

impl CloudError {
    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }

    /// Whether the failed call may have changed the cloud: its pending operation must be
    /// resolved before it is sent again or replaced.
    pub fn may_have_acted(&self) -> bool {
        self.outcome == Outcome::Unknown
    }

    /// Whether the ProviderConfig (credentials, region, endpoint) is at fault, rather than the
    /// claim: the controller reports it on the ProviderConfig.
    pub fn is_account_problem(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Credentials | ErrorClass::Configuration
        )
    }

    /// This error, for a mutating call the cloud accepted but whose answer
    /// could not be read: it may have acted.
    pub(crate) fn after_acceptance(mut self) -> Self {
        self.outcome = Outcome::Unknown;
        self
    }

    /// This error, for a check before a mutating call: the call was not sent.
    pub(crate) fn before_sending(mut self) -> Self {
        self.outcome = Outcome::NotSent;
        self
    }

    /// A cloud's answer refusing the call (its outcome is decided later by the transport).
    pub(crate) fn answered(
        provider: Provider,
        action: &str,
        code: String,
        message: String,
        http_status: Option<u16>,
        request_id: Option<String>,
        class: ErrorClass,
    ) -> Self {
        CloudError {
            provider,
            action: action.to_string(),
            code: bounded(code, MAX_CODE_CHARS),
            message: bounded(message, MAX_MESSAGE_CHARS),
            http_status,
            request_id: request_id.map(|id| bounded(id, MAX_CODE_CHARS)),
            class,
            outcome: Outcome::Rejected,
        }
    }

    /// An error detected on this side of the wire (`Client.*` codes).
    pub(crate) fn client(
        provider: Provider,
        action: &str,
        code: &str,
        class: ErrorClass,
        message: String,
    ) -> Self {
        CloudError {
            provider,
            action: action.to_string(),
            code: code.to_string(),
            message: bounded(message, MAX_MESSAGE_CHARS),
            http_status: None,
            request_id: None,
            class,
            outcome: Outcome::NotSent,
        }
    }
}

impl CloudError {
    /// The operation cannot be expressed as a request (`Client.InvalidRequest`).
    pub(crate) fn invalid_request(provider: Provider, action: &str, message: String) -> Self {
        CloudError::client(
            provider,
            action,
            "Client.InvalidRequest",
            ErrorClass::InvalidInput,
            message,
        )
    }

    /// The cloud answered with data this client cannot use (`Client.BadResponse`).
    pub(crate) fn bad_response(provider: Provider, action: &str, message: String) -> Self {
        CloudError::client(
            provider,
            action,
            "Client.BadResponse",
            ErrorClass::Transient,
            message,
        )
    }
}

/// Parses an address the cloud returned; a malformed one is a clear error.
pub(crate) fn parse_address<T: std::str::FromStr>(
    provider: Provider,
    action: &str,
    s: &str,
) -> Result<T, CloudError> {
    s.trim().parse().map_err(|_| {
        CloudError::bad_response(
            provider,
            action,
            format!("the cloud returned an invalid address {s:?}"),
        )
    })
}

/// One row of a provider's error table: the code, its class, what it means
/// for a user and what to do. The same rows are published in `docs/errors.md`.
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    pub code: &'static str,
    pub class: ErrorClass,
    pub meaning: &'static str,
    pub action: &'static str,
}

pub(crate) const fn row(
    code: &'static str,
    class: ErrorClass,
    meaning: &'static str,
    action: &'static str,
) -> CodeInfo {
    CodeInfo {
        code,
        class,
        meaning,
        action,
    }
}

/// Client-side codes shared by all providers.
pub const CLIENT_CODES: &[CodeInfo] = &[
    row(
        "Client.Timeout",
        ErrorClass::Transient,
        "No response within the request timeout. The change may or may not have been applied.",
        "Retried with backoff; the controller resolves the pending operation from the cloud's state first.",
    ),
    row(
        "Client.Network",
        ErrorClass::Transient,
        "Connection refused, reset or TLS failure before a response arrived.",
        "Retried with backoff; check network policy and DNS if it persists.",
    ),
    row(
        "Client.BadResponse",
        ErrorClass::Transient,
        "The response was not the cloud's JSON envelope (a proxy page, a truncated or non-JSON body).",
        "Retried with backoff; the message quotes the start of the body. Check proxies between the controller and the cloud.",
    ),
    row(
        "Client.ResponseTooLarge",
        ErrorClass::Transient,
        "The response body was larger than the transport's limit (4 MiB by default) and was not read: not an answer of the cloud's API (a proxy, a misdirected endpoint).",
        "Retried with backoff; a write is first resolved from the cloud's state. Check the endpoint and any proxy in between.",
    ),
    row(
        "Client.HttpStatus",
        ErrorClass::Transient,
        "An HTTP error status without a cloud error code (gateway failure).",
        "5xx and 429 are retried; 401/403 are treated as credential problems; other 4xx, and 3xx (redirects are never followed), as terminal.",
    ),
    row(
        "Client.NicNotFound",
        ErrorClass::NotFound,
        "While resolving a pending assignment or attachment, the NIC no longer existed.",
        "Check the claim's nicId; the claim reports the NIC as missing until it is fixed or deleted.",
    ),
    row(
        "Client.TaskFailed",
        ErrorClass::Transient,
        "A Tencent asynchronous task (DescribeVpcTaskResult / legacy task query) ended FAILED without a known error code in its output; the message carries the output.",
        "The controller re-observes the NIC and plans again with a new token; if it repeats, the task output names the cause. A task whose output names a known code is classified by that code.",
    ),
    row(
        "Client.DeadlineExceeded",
        ErrorClass::Transient,
        "The call could not be sent before its deadline (its window after `startedAt`, waiting on the rate limiter included). It was not sent.",
        "The controller resolves the pending operation, which is then certain not to have acted, and plans again.",
    ),
    row(
        "Client.NotOwned",
        ErrorClass::Conflict,
        "A release names only the NIC (Zenlayer IPv6 unassign, detach) and the NIC no longer carries the address or instance the operation means to release.",
        "Nothing was sent; the controller re-observes the NIC.",
    ),
    row(
        "Client.NotAttached",
        ErrorClass::NotFound,
        "A Zenlayer detach found the NIC not attached to any instance.",
        "Nothing was sent; on release this counts as done.",
    ),
    row(
        "Client.InvalidEndpoint",
        ErrorClass::Configuration,
        "The endpoint override is not a valid URL, or uses plain http:// for a host that is not loopback.",
        "Fix `endpoint` in the ProviderConfig; http:// is allowed only for 127.0.0.1, ::1 and localhost.",
    ),
    row(
        "Client.InvalidRequest",
        ErrorClass::InvalidInput,
        "The operation cannot be expressed on this provider (e.g. legacy API without vpcId, IPv6 on the legacy API).",
        "Fix the claim or ProviderConfig as the message says.",
    ),
];

/// Finds `code` in `table`: exact match first, then the prefix before the
/// first `.` (Tencent's and older Zenlayer codes are dotted families).
pub(crate) fn lookup(table: &[CodeInfo], code: &str) -> Option<ErrorClass> {
    if let Some(row) = table.iter().find(|r| r.code == code) {
        return Some(row.class);
    }
    let prefix = code.split('.').next()?;
    table.iter().find(|r| r.code == prefix).map(|r| r.class)
}

/// Class of an error without a known code, from its HTTP status alone.
pub(crate) fn class_of_status(status: u16) -> ErrorClass {
    match status {
        429 => ErrorClass::Throttled,
        401 | 403 => ErrorClass::Credentials,
        404 => ErrorClass::NotFound,
        409 => ErrorClass::Conflict,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Terminal,
    }
}

/// Renders tables as the Markdown published in `docs/errors.md`.
pub fn markdown_table(title: &str, rows: &[CodeInfo]) -> String {
    let mut out =
        format!("### {title}\n\n| Code | Class | Meaning | What to do |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.code, r.class, r.meaning, r.action
        ));
    }
    out
}
