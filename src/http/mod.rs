//! The HTTP layer: routes, reading the body within its limit, and turning outcomes into
//! replies. What a request means is decided in `collector`; how it is answered, in `reply`.

pub mod processor;
pub mod reply;
pub mod request;

pub use processor::Processor;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::Response;

use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The KubeDiag agent refuses larger answers.
pub const REPLY_LIMIT: usize = 2 * 1024 * 1024;

/// What every handler shares.
pub struct App {
    pub collector: Collector,
    pub body_limit: usize,
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
fn route_of(path: &str) -> &'static str {
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
    let path = format!("/processor/{}", processor.name());
    let outcome = async {
        let body = read_body(headers, body, app.body_limit).await?;
        let context = request::context(&body)?;
        let (subject, result) = processor.answer(&app.collector, &context).await?;
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

/// Reads the body up to the limit. The agent may send no Content-Length (chunked), so the
/// limit is enforced on the bytes read, not only on the header.
async fn read_body<S, B>(headers: &HeaderMap, body: S, limit: usize) -> Result<Vec<u8>>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let too_large = || Error::BodyTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|err| Error::BadRequest(format!("the body could not be read ({err})")))?;
        if buffer.len() + chunk.remaining() > limit {
            return Err(too_large());
        }
        buffer.put(chunk);
    }
    Ok(buffer.to_vec())
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
