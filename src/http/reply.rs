//! Every answer the server gives is built here, and every error maps to its one status here.

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::access::Refusal;
use crate::error::{Error, RuntimeFailure};

pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::PodNotFound { .. } => StatusCode::NOT_FOUND,
        // What this node's runtime cannot answer (Docker's info on a containerd node).
        Error::Runtime {
            cause: RuntimeFailure::Unsupported { .. },
            ..
        } => StatusCode::NOT_FOUND,
        Error::Runtime { .. }
        | Error::ReplyTooLarge { .. }
        | Error::Encoding { .. }
        | Error::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of a request refused before anything was done for it.
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::Address { .. } => StatusCode::FORBIDDEN,
        Refusal::TokenMissing | Refusal::TokenWrong => StatusCode::UNAUTHORIZED,
        Refusal::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": "<one clear sentence>"}` with the status of the error.
pub fn error(error: &Error) -> Response {
    message(status_of(error), &error.to_string())
}

/// A refusal, as `{"error": "..."}` with its status. The connection is closed after it: a
/// refused caller has no use for it.
pub fn refused(refusal: &Refusal) -> Response {
    let mut response = closing(message(refusal_status(refusal), &refusal.to_string()));
    if matches!(refusal, Refusal::TokenMissing | Refusal::TokenWrong) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The answer with `Connection: close`: the server closes the connection after it (the rest
/// of a body it did not read cannot be told from a next request), and a keep-alive client
/// must know not to send another request on it.
pub fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

pub fn message(status: StatusCode, text: &str) -> Response {
    json(status, &ErrorBody { error: text })
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(err) => {
            log::error!("could not serialize a reply: {err}");
            let fallback = br#"{"error":"the reply could not be serialized"}"#.to_vec();
            json_bytes(StatusCode::INTERNAL_SERVER_ERROR, fallback)
        }
    }
}

pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(bytes.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `405` with the methods the path does take.
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = message(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed: use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
