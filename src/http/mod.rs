//! The HTTP layer: routes, reading the body within its limit, and turning outcomes into
//! replies. What a request means is decided in `collector`; how it is answered, in `reply`.

pub mod reply;
pub mod request;

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

pub const POD_DETAIL_PATH: &str = "/processor/podDetailCollector";
/// The key KubeDiag's agent merges into the diagnosis context; its value is the Pod as a string.
pub const POD_DETAIL_KEY: &str = "collector.kubernetes.pod.detail";
/// The KubeDiag agent refuses larger answers.
pub const REPLY_LIMIT: usize = 2 * 1024 * 1024;

/// What every handler shares.
pub struct App {
    pub collector: Collector,
    pub body_limit: usize,
}

pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_app = warp::any().map(move || app.clone());

    let pod_detail = warp::path!("processor" / "podDetailCollector")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_app.clone())
        .then(
            |method: Method, headers: HeaderMap, body, app: Arc<App>| async move {
                if method != Method::POST {
                    return reply::method_not_allowed("POST");
                }
                pod_detail(&app, &headers, body).await
            },
        );

    let healthz = warp::path!("healthz")
        .and(warp::method())
        .map(|method: Method| match method {
            Method::GET | Method::HEAD => reply::json(StatusCode::OK, &json!({"status": "ok"})),
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

    let not_found = warp::any()
        .and(warp::path::full())
        .map(|path: warp::path::FullPath| {
            reply::message(
                StatusCode::NOT_FOUND,
                &format!(
                    "no such path {}: the processor is at POST {POD_DETAIL_PATH}",
                    path.as_str()
                ),
            )
        });

    pod_detail
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(not_found)
        .unify()
}

async fn pod_detail<S, B>(app: &App, headers: &HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let started = Instant::now();
    let outcome = async {
        let body = read_body(headers, body, app.body_limit).await?;
        let pod_ref = request::pod_ref(&body)?;
        let pod = app.collector.pod(&pod_ref).await?;
        let pod_json = serde_json::to_string(&pod).map_err(|err| {
            Error::Config(format!("pod {pod_ref} could not be serialized: {err}"))
        })?;
        let reply = serde_json::to_vec(&json!({ POD_DETAIL_KEY: pod_json })).map_err(|err| {
            Error::Config(format!("pod {pod_ref} could not be serialized: {err}"))
        })?;
        if reply.len() > REPLY_LIMIT {
            return Err(Error::ReplyTooLarge {
                pod: pod_ref,
                size: reply.len(),
                limit: REPLY_LIMIT,
            });
        }
        Ok((pod_ref, reply))
    }
    .await;

    let elapsed = started.elapsed();
    match outcome {
        Ok((pod_ref, reply)) => {
            log::info!("POST {POD_DETAIL_PATH} pod {pod_ref}: 200 in {elapsed:.1?}");
            reply::json_bytes(StatusCode::OK, reply)
        }
        Err(error) => {
            let status = reply::status_of(&error);
            if status.is_server_error() {
                log::warn!(
                    "POST {POD_DETAIL_PATH}: {} in {elapsed:.1?}: {error}",
                    status.as_u16()
                );
            } else {
                log::info!(
                    "POST {POD_DETAIL_PATH}: {} in {elapsed:.1?}: {error}",
                    status.as_u16()
                );
            }
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
        Ok(()) => reply::json(
            StatusCode::OK,
            &json!({"status": "ready", "docker": app.collector.docker_host()}),
        ),
        Err(error) => reply::message(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}
