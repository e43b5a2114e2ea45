//! The HTTP layer: routes, reading the body within its limit, and turning outcomes into
//! replies. What a request means is decided in `collector`; how it is answered, in `reply`.

pub mod access;
pub mod processor;
pub mod reply;
pub mod request;
pub mod tls;
pub mod token;

pub use processor::Processor;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::Response;

use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use access::Refusal;

/// The KubeDiag agent refuses larger answers.
pub const REPLY_LIMIT: usize = 2 * 1024 * 1024;

/// How much of a body over the limit is still read (and thrown away) so that a client that
/// sends it whole reads the 413 instead of a reset connection. Past it, the connection is
/// closed after the answer.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// What every handler shares.
pub struct App {
    pub collector: Collector,
    pub body_limit: usize,
    /// The whole body must arrive within this time.
    pub read_timeout: Duration,
    /// Show what is redacted by default (environment values, credentials in command lines).
    pub reveal: bool,
    pub metrics: Arc<Metrics>,
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let metrics = app.metrics.clone();
    let with_app = warp::any().map(move || app.clone());

    // Every processor shares one contract: POST only, the body limit, a JSON object in, one
    // key out, errors as JSON.
    let processors = warp::path!("processor" / String)
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_app.clone())
        .then(
            |name: String, method: Method, headers: HeaderMap, body, app: Arc<App>| async move {
                let Some(processor) = Processor::named(&name) else {
                    return not_found(&format!("/processor/{name}"));
                };
                if method != Method::POST {
                    return reply::method_not_allowed("POST");
                }
                run_processor(&app, processor, &headers, body).await
            },
        );

    let healthz = warp::path!("healthz")
        .and(warp::method())
        .map(|method: Method| match method {
            Method::GET | Method::HEAD => reply::json(StatusCode::OK, &json!({"status": "ok"})),
            _ => reply::method_not_allowed("GET"),
        });

    let metrics_route = warp::path!("metrics")
        .and(warp::method())
        .and(with_app.clone())
        .map(|method: Method, app: Arc<App>| match method {
            Method::GET | Method::HEAD => {
                let mut response = Response::new(app.metrics.render().into());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            _ => reply::method_not_allowed("GET"),
        });

    let readyz = warp::path!("readyz")
        .and(warp::method())
        .and(with_app)
        .then(|method: Method, app: Arc<App>| async move {
            match method {
                Method::GET | Method::HEAD => readyz(&app).await,
                _ => reply::method_not_allowed("GET"),
            }
        });

    let unknown = warp::path::full().map(|path: warp::path::FullPath| not_found(path.as_str()));

    processors
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics_route)
        .unify()
        .or(unknown)
        .unify()
        .with(warp::log::custom(move |info| {
            metrics.request(
                route_of(info.path()),
                info.status().as_u16(),
                info.elapsed(),
            )
        }))
}

/// A fixed set of route labels, so that scanning for paths cannot grow the metrics.
pub(crate) fn route_of(path: &str) -> &'static str {
    if let Some(name) = path.strip_prefix("/processor/")
        && let Some(processor) = Processor::named(name)
    {
        return processor.path();
    }
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

fn not_found(path: &str) -> Response {
    let known: Vec<String> = Processor::ALL
        .iter()
        .map(|p| format!("/processor/{}", p.name()))
        .collect();
    reply::message(
        StatusCode::NOT_FOUND,
        &format!(
            "no such path {path}: the processors are POST {}",
            known.join(", ")
        ),
    )
}

async fn run_processor<S, B>(
    app: &App,
    processor: Processor,
    headers: &HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let started = Instant::now();
    let path = processor.path();
    let body = match read_body(headers, body, app.body_limit, app.read_timeout).await {
        Ok(body) => body,
        Err(failure) => {
            let elapsed = started.elapsed();
            let (status, text, response) = match failure {
                BodyFailure::TooLarge { drained } => {
                    let error = Error::BodyTooLarge {
                        limit: app.body_limit,
                    };
                    let response = reply::error(&error);
                    let response = if drained {
                        response
                    } else {
                        reply::closing(response)
                    };
                    (reply::status_of(&error), error.to_string(), response)
                }
                BodyFailure::Timeout => {
                    let refusal = Refusal::BodyTimeout {
                        timeout: app.read_timeout,
                    };
                    app.metrics.refused(refusal.reason());
                    let status = reply::refusal_status(&refusal);
                    (status, refusal.to_string(), reply::refused(&refusal))
                }
                BodyFailure::Unreadable(detail) => {
                    let error = Error::BadRequest(format!("the body could not be read ({detail})"));
                    (
                        reply::status_of(&error),
                        error.to_string(),
                        reply::error(&error),
                    )
                }
            };
            log::info!("POST {path}: {} in {elapsed:.1?}: {text}", status.as_u16());
            return response;
        }
    };
    let outcome = async {
        let context = request::context(&body)?;
        let (subject, result) = processor
            .answer(&app.collector, &context, app.reveal)
            .await?;
        let reply = serde_json::to_vec(&json!({ processor.result_key(): result }))
            .map_err(|err| processor::encoding(format!("{subject}: the answer"), err))?;
        if reply.len() > REPLY_LIMIT {
            return Err(Error::ReplyTooLarge {
                subject,
                size: reply.len(),
                limit: REPLY_LIMIT,
            });
        }
        Ok((subject, reply))
    }
    .await;

    let elapsed = started.elapsed();
    match outcome {
        Ok((subject, reply)) => {
            log::info!("POST {path} {subject}: 200 in {elapsed:.1?}");
            reply::json_bytes(StatusCode::OK, reply)
        }
        Err(error) => {
            let status = reply::status_of(&error);
            let level = if status.is_server_error() {
                log::Level::Warn
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "POST {path}: {} in {elapsed:.1?}: {error}",
                status.as_u16()
            );
            reply::error(&error)
        }
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
enum BodyFailure {
    /// Over the limit; `drained` when the rest was read too, so the connection can serve on.
    TooLarge { drained: bool },
    /// Not all there within the read timeout.
    Timeout,
    /// Broken on the wire (bad chunk encoding, connection lost).
    Unreadable(String),
}

/// Reads the body up to the limit, within the read timeout. The agent may send no
/// Content-Length (chunked), so the limit is enforced on the bytes read, not only on the
/// header. A body over the limit is still read, up to [`DRAIN_LIMIT`] more bytes and within
/// the timeout, and thrown away: a client that sends its whole body before it reads the answer
/// then reads the 413, where a connection closed with unread data would be reset under it.
async fn read_body<S, B>(
    headers: &HeaderMap,
    body: S,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, BodyFailure>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > limit as u64) {
        // A client that waits for `100 Continue` has sent nothing yet; one that declares
        // more than can be drained is not worth the wait.
        let waits = headers
            .get(header::EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if waits || length > limit as u64 + DRAIN_LIMIT {
            return Err(BodyFailure::TooLarge { drained: false });
        }
    }
    let mut body = std::pin::pin!(body);
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut over: Option<u64> = None;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => {
                return Err(match over {
                    Some(_) => BodyFailure::TooLarge { drained: false },
                    None => BodyFailure::Timeout,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                return Err(match over {
                    Some(_) => BodyFailure::TooLarge { drained: false },
                    None => BodyFailure::Unreadable(err.to_string()),
                });
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if let Some(drained) = over.as_mut() {
            *drained += chunk.remaining() as u64;
            if *drained > DRAIN_LIMIT {
                return Err(BodyFailure::TooLarge { drained: false });
            }
        } else if buffer.len() + chunk.remaining() > limit {
            over = Some((buffer.len() + chunk.remaining() - limit) as u64);
            buffer = BytesMut::new();
        } else {
            buffer.put(chunk);
        }
    }
    match over {
        Some(_) => Err(BodyFailure::TooLarge { drained: true }),
        None => Ok(buffer.to_vec()),
    }
}

async fn readyz(app: &App) -> Response {
    match app.collector.ready().await {
        Ok(mut runtime) => {
            if let Some(fields) = runtime.as_object_mut() {
                fields.insert("status".into(), json!("ready"));
            }
            reply::json(StatusCode::OK, &runtime)
        }
        Err(error) => reply::message(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}
