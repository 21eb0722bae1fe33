//! The operator's calls to one pooler pod's control endpoint, and the wire format both sides
//! share. Plain HTTP/1.1 with `Connection: close` over a TCP stream: four tiny requests do
//! not justify an HTTP client crate. The bearer token is sent in a header, never logged, and
//! never part of an error.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::pause::PauseState;

/// What a pooler pod answers to every authenticated call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolerStatus {
    pub state: PauseState,
    /// Host the `[databases]` section points at.
    pub target: String,
    /// Milliseconds before the pooler resumes by itself, while paused or pausing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_remaining_ms: Option<u64>,
}

/// Body of `POST /v1/target`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TargetRequest {
    pub host: String,
}

/// Paths of the control endpoint.
pub const PATH_STATUS: &str = "/v1/status";
pub const PATH_PAUSE: &str = "/v1/pause";
pub const PATH_RESUME: &str = "/v1/resume";
pub const PATH_TARGET: &str = "/v1/target";
pub const PATH_HEALTHZ: &str = "/healthz";
/// Query parameter of pause: how long the call may wait for PgBouncer to drain.
pub const WAIT_MS_PARAM: &str = "waitMs";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClientError {
    #[error("pooler {addr}: {action}: {message}")]
    Io { addr: String, action: &'static str, message: String },
    #[error("pooler {addr}: no answer within {}ms", timeout.as_millis())]
    Timeout { addr: String, timeout: Duration },
    #[error("pooler answered HTTP {code}: {message}")]
    Refused { code: u16, message: String },
    #[error("pooler answer unreadable: {0}")]
    Malformed(String),
}

/// Calls to pooler pods with one cluster's token.
#[derive(Clone)]
pub struct PoolerClient {
    token: String,
    timeout: Duration,
}

impl std::fmt::Debug for PoolerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolerClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl PoolerClient {
    pub fn new(token: String, timeout: Duration) -> Self {
        Self { token, timeout }
    }

    pub async fn status(&self, addr: &str) -> Result<PoolerStatus, ClientError> {
        self.call(addr, "GET", PATH_STATUS.to_string(), None).await
    }

    /// Starts or renews a pause; waits up to `wait` for PgBouncer to drain.
    pub async fn pause(&self, addr: &str, wait: Duration) -> Result<PoolerStatus, ClientError> {
        let path = format!("{PATH_PAUSE}?{WAIT_MS_PARAM}={}", wait.as_millis());
        self.call(addr, "POST", path, None).await
    }

    pub async fn resume(&self, addr: &str) -> Result<PoolerStatus, ClientError> {
        self.call(addr, "POST", PATH_RESUME.to_string(), None).await
    }

    pub async fn target(&self, addr: &str, host: &str) -> Result<PoolerStatus, ClientError> {
        let body = serde_json::to_string(&TargetRequest { host: host.to_string() })
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        self.call(addr, "POST", PATH_TARGET.to_string(), Some(body)).await
    }

    async fn call(
        &self,
        addr: &str,
        method: &str,
        path: String,
        body: Option<String>,
    ) -> Result<PoolerStatus, ClientError> {
        let request = request_bytes(method, &path, addr, &self.token, body.as_deref());
        let exchange = async {
            let io = |action: &'static str| {
                move |e: std::io::Error| ClientError::Io {
                    addr: addr.to_string(),
                    action,
                    message: e.to_string(),
                }
            };
            let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io("connecting"))?;
            stream.write_all(&request).await.map_err(io("sending"))?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.map_err(io("reading"))?;
            Ok::<_, ClientError>(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.to_string(), timeout: self.timeout })??;
        let (code, body) = parse_response(&answer)?;
        parse_status(code, &body)
    }
}

/// The request on the wire. `addr` is `host:port`, the Host header.
pub fn request_bytes(method: &str, path: &str, addr: &str, token: &str, body: Option<&str>) -> Vec<u8> {
    let body = body.unwrap_or("");
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Status code and body of an HTTP/1.1 answer read to its end.
pub fn parse_response(bytes: &[u8]) -> Result<(u16, String), ClientError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ClientError::Malformed("not UTF-8".into()))?;
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| ClientError::Malformed("no end of headers".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| ClientError::Malformed(format!("status line {status_line:?}")))?;
    let header = |name: &str| {
        lines.clone().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Err(ClientError::Malformed("chunked answers are not expected".into()));
    }
    let body = match header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(length)) if length <= body.len() => &body[..length],
        Some(_) => return Err(ClientError::Malformed("body shorter than its Content-Length".into())),
        None => body,
    };
    Ok((code, body.to_string()))
}

/// A 200 carries a [`PoolerStatus`]; anything else is a refusal with the pooler's message.
pub fn parse_status(code: u16, body: &str) -> Result<PoolerStatus, ClientError> {
    if code != 200 {
        let message: String = body.chars().take(200).collect();
        return Err(ClientError::Refused { code, message });
    }
    serde_json::from_str(body).map_err(|e| ClientError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_token_in_a_header_and_close() {
        let bytes = request_bytes("POST", "/v1/target", "10.0.0.7:8008", "tok", Some("{\"host\":\"h\"}"));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("POST /v1/target HTTP/1.1\r\nHost: 10.0.0.7:8008\r\n"), "{text}");
        assert!(text.contains("\r\nAuthorization: Bearer tok\r\n"));
        assert!(text.contains("\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"host\":\"h\"}"));
    }

    #[test]
    fn a_status_answer_parses() {
        let body = r#"{"state":"paused","target":"demo-1-0.demo.db.svc","pauseRemainingMs":8000}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (code, body) = parse_response(answer.as_bytes()).unwrap();
        let status = parse_status(code, &body).unwrap();
        assert_eq!(
            status,
            PoolerStatus {
                state: PauseState::Paused,
                target: "demo-1-0.demo.db.svc".into(),
                pause_remaining_ms: Some(8000)
            }
        );
        let running = parse_status(200, r#"{"state":"running","target":"x"}"#).unwrap();
        assert_eq!((running.state, running.pause_remaining_ms), (PauseState::Running, None));
    }

    #[test]
    fn refusals_and_garbage_are_errors_with_their_cause() {
        let answer = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 12\r\n\r\nbad token!!!";
        let (code, body) = parse_response(answer).unwrap();
        assert_eq!(
            parse_status(code, &body),
            Err(ClientError::Refused { code: 401, message: "bad token!!!".into() })
        );
        assert!(matches!(parse_response(b"garbage"), Err(ClientError::Malformed(_))));
        assert!(matches!(parse_response(b"SSH-2.0 x\r\n\r\n"), Err(ClientError::Malformed(_))));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n{}"),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse_status(200, r#"{"state":"sleeping","target":"x"}"#),
            Err(ClientError::Malformed(_))
        ));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let client = PoolerClient::new("s3cret-token".into(), Duration::from_secs(1));
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
