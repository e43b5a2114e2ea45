//! `--tls-cert` / `--tls-key` (issue 12): HTTPS with a certificate made here, and its rotation
//! the way cert-manager does it (the Secret's files replaced), with a bad pair in between.
//!
//! Needs the test daemon (`DOCKER_HOST`): run `scripts/test`.

mod faults;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faults::{Proxy, bare_settings, metric};
use pod_detail_collector::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

/// A self-signed certificate for 127.0.0.1 and localhost: PEM of both, DER of the certificate.
struct Pair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn make_pair() -> Pair {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("generate a certificate");
    Pair {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// Writes the file as a Secret update does: a new file renamed over the old one.
fn replace(path: &Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).expect("write");
    std::fs::rename(&next, path).expect("rename");
}

/// One request over a new TLS connection that trusts exactly `trusted`: the status line's code,
/// the body, and the certificate the server showed.
async fn https(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    request: &str,
) -> Result<(u16, String, CertificateDer<'static>), String> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).map_err(|e| e.to_string())?;
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let shown = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first().cloned())
        .ok_or("no server certificate")?;
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    // The server may close without close_notify after `Connection: close`: what was read counts.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body, shown))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn tls_settings(cert: &Path, key: &Path) -> Settings {
    Settings {
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        ..bare_settings()
    }
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("tls.crt"), dir.join("tls.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_follows_certificate_rotation() {
    let proxy = Proxy::start();
    let dir = faults::short_temp_dir("pdc-tls");
    let (cert, key) = paths(&dir);
    let first = make_pair();
    replace(&cert, &first.cert_pem);
    replace(&key, &first.key_pem);
    let running = proxy.collector(tls_settings(&cert, &key)).await;
    assert_eq!(running.scheme, "https");
    let addr = running.addr;

    // HTTPS with the first certificate: probes and processors.
    let (status, _, shown) = https(addr, &first.der, &get("/healthz"))
        .await
        .expect("healthz over TLS");
    assert_eq!(status, 200);
    assert_eq!(shown, first.der, "the server shows its certificate");
    let (status, body, _) = https(
        addr,
        &first.der,
        &post("/processor/dockerInfoCollector", "{}"),
    )
    .await
    .expect("processor over TLS");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("collector.kubernetes.docker.info"), "{body}");

    // Plain HTTP on the TLS port is not served.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(get("/healthz").as_bytes())
        .await
        .expect("send");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut reply)).await;
    assert!(
        !String::from_utf8_lossy(&reply).contains("200 OK"),
        "plain HTTP answered on the TLS port"
    );

    // Rotation: the next connection shows the new certificate; the old one is gone.
    let second = make_pair();
    replace(&cert, &second.cert_pem);
    replace(&key, &second.key_pem);
    let (status, _, shown) = https(addr, &second.der, &get("/healthz"))
        .await
        .expect("healthz after rotation");
    assert_eq!(status, 200);
    assert_eq!(shown, second.der, "the rotated certificate");
    assert!(
        https(addr, &first.der, &get("/healthz")).await.is_err(),
        "a client that trusts only the old certificate still connects"
    );

    // A bad pair (the new certificate with the old key, as mid-rotation): the previous pair
    // stays in force; once the key follows, the new pair is served.
    let third = make_pair();
    replace(&cert, &third.cert_pem);
    let (status, _, shown) = https(addr, &second.der, &get("/healthz"))
        .await
        .expect("healthz with a mismatched pair on disk");
    assert_eq!((status, &shown), (200, &second.der), "previous pair kept");
    replace(&key, &third.key_pem);
    let (status, _, shown) = https(addr, &third.der, &get("/healthz"))
        .await
        .expect("healthz after the key followed");
    assert_eq!((status, &shown), (200, &third.der));

    let (_, text, _) = https(addr, &third.der, &get("/metrics"))
        .await
        .expect("metrics over TLS");
    assert!(
        metric(
            &text,
            "pod_detail_collector_refused_total",
            &[("reason", "tls_handshake")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "the plain HTTP and the old-certificate handshakes are counted: {text}"
    );
    eprintln!(
        "tls: HTTPS with a generated certificate, two rotations (one through a mismatched pair \
         that was refused), plain HTTP and a client trusting the old certificate refused"
    );
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tls_files_that_do_not_load_refuse_to_start() {
    let dir = faults::short_temp_dir("pdc-tls");
    let (cert, key) = paths(&dir);
    let one = make_pair();
    let other = make_pair();
    let cases: Vec<(&str, Settings)> = vec![
        ("missing files", tls_settings(&cert, &key)),
        (
            "only a certificate",
            Settings {
                tls_cert: Some(cert.clone()),
                ..bare_settings()
            },
        ),
    ];
    for (what, settings) in cases {
        assert!(
            pod_detail_collector::server::start(settings).await.is_err(),
            "{what}"
        );
    }
    replace(&cert, &one.cert_pem);
    replace(&key, &other.key_pem);
    let mismatched = pod_detail_collector::server::start(tls_settings(&cert, &key)).await;
    let Err(err) = mismatched else {
        panic!("started with a key that does not match the certificate");
    };
    assert!(err.to_string().contains("--tls-cert"), "{err}");
    replace(&key, "not a key");
    assert!(
        pod_detail_collector::server::start(tls_settings(&cert, &key))
            .await
            .is_err()
    );
    let _ = std::fs::remove_dir_all(dir);
}
