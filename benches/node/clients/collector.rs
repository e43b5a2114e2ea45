//! The collector, asked over loopback HTTP (keep-alive), its answer read in full.

use std::sync::Arc;

use crate::layout::PodKey;
use crate::measure::{Bench, Point};
use crate::server::{PROCESSOR_PATH, Server};

async fn collector_query(
    client: reqwest::Client,
    url: Arc<str>,
    key: PodKey,
) -> Result<(), String> {
    let body = serde_json::json!({"pod.namespace": key.namespace, "pod.name": key.name});
    let reply = client
        .post(&*url)
        .body(body.to_string())
        .send()
        .await
        .map_err(|err| format!("request: {err}"))?;
    let status = reply.status();
    let bytes = reply
        .bytes()
        .await
        .map_err(|err| format!("reply body: {err}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(())
}

impl Bench<'_> {
    pub(crate) async fn collector(
        &self,
        server: &Server,
        path: &'static str,
        concurrency: usize,
        total: usize,
    ) -> Point {
        let (client, url) = (
            server.http.clone(),
            Arc::<str>::from(server.url(PROCESSOR_PATH)),
        );
        let pid = server.pid().to_string();
        self.point(path, concurrency, total, Some(&pid), move |k| {
            collector_query(client.clone(), url.clone(), k)
        })
        .await
    }
}
