//! A bare HTTP/1 connection to the Docker daemon, for what the event index needs and bollard
//! does not give: the `Date` header of an answer (the daemon's clock), one connection kept
//! open (while it stays open, the daemon has not restarted and its event log is the one
//! read before), and a container list read straight into the few fields the index keeps.
//! Only `GET`s are sent.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::fmt::rfc2822::DateTimeParser;

/// No answer the index reads is anywhere near this (a node-wide list of thousands of
/// containers is a few MiB).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Wire {
    Unix(PathBuf),
    Tcp(String),
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `Date` header, in Unix seconds.
    pub date: Option<i64>,
    pub body: Bytes,
}

/// An open connection; requests on it go one at a time.
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
}

impl Wire {
    /// From a normalised host (`unix:///path`, `tcp://host:port`, `http://host:port`).
    pub fn new(host: &str) -> Option<Wire> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(Wire::Unix(PathBuf::from(path)));
        }
        let address = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))?;
        Some(Wire::Tcp(address.trim_end_matches('/').to_string()))
    }

    pub async fn connect(&self) -> Result<Conn, String> {
        let sender = match self {
            Wire::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|err| format!("connect to {}: {err}", path.display()))?;
                handshake(stream).await?
            }
            Wire::Tcp(address) => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(|err| format!("connect to {address}: {err}"))?;
                let _ = stream.set_nodelay(true);
                handshake(stream).await?
            }
        };
        Ok(Conn { sender })
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Empty<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake: {err}"))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            log::debug!("docker connection ended: {err}");
        }
    });
    Ok(sender)
}

impl Conn {
    /// Whether the daemon (or anything between) closed it.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// `GET path_and_query`, the whole answer read.
    pub async fn get(&mut self, path_and_query: &str) -> Result<Answer, String> {
        self.sender
            .ready()
            .await
            .map_err(|err| format!("connection closed: {err}"))?;
        let request = hyper::Request::get(path_and_query)
            .header(hyper::header::HOST, "docker")
            .body(Empty::new())
            .map_err(|err| format!("request {path_and_query}: {err}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|err| format!("GET {path_and_query}: {err}"))?;
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get(hyper::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(http_date);
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|err| format!("reading the answer to GET {path_and_query}: {err}"))?
            .to_bytes();
        Ok(Answer { status, date, body })
    }
}

/// An HTTP date (`Tue, 15 Nov 1994 08:12:31 GMT`) in Unix seconds.
pub fn http_date(value: &str) -> Option<i64> {
    DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()
        .map(|timestamp| timestamp.as_second())
}

/// `%`-encodes a query value (Docker's filters are JSON).
pub fn query_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_http_dates_and_hosts() {
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:01 GMT"), Some(1));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("yesterday"), None);
        assert!(
            matches!(Wire::new("unix:///run/d.sock"), Some(Wire::Unix(p)) if p == std::path::Path::new("/run/d.sock"))
        );
        assert!(
            matches!(Wire::new("tcp://10.0.0.1:2375"), Some(Wire::Tcp(a)) if a == "10.0.0.1:2375")
        );
        assert_eq!(
            query_value(r#"{"label":["a=b"]}"#),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
    }
}
