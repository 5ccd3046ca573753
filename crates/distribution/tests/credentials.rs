//! Credentials come only from the caller's provider: a pull without one sends no
//! `Authorization` header even when the docker config file of this process's user holds
//! credentials for the registry, and a pull given the docker config as its provider sends them.
//!
//! The registry is a fake on 127.0.0.1 (plain HTTP, as for every local host) that answers every
//! request with a basic-auth challenge and records the headers it was sent.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::sync::{Arc, Mutex};

use berth_content::LocalStore;
use berth_core::ErrorKind;
use berth_distribution::{DockerConfig, NoProgress, PullOptions, Puller};
use berth_metadata::Metadata;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A registry that wants basic auth from everyone; returns its port and the requests' heads.
async fn challenging_registry() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heads = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_lowercase());
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_pull_without_a_provider_sends_no_credentials_from_the_docker_config() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (port, seen) = challenging_registry().await;
    let host = format!("127.0.0.1:{port}");
    // This process's user has logged in to the registry: both places a docker config is
    // looked for hold credentials for it.
    let home = tempfile::tempdir().unwrap();
    let auth = "YWxpY2U6czNjcmV0"; // alice:s3cret
    let config = format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#);
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(home.path().join(".docker/config.json"), &config).unwrap();
    std::env::set_var("HOME", home.path());
    std::env::set_var("DOCKER_CONFIG", home.path().join(".docker"));

    let dir = tempfile::tempdir().unwrap();
    let meta = Metadata::open(
        dir.path().join("meta.redb"),
        LocalStore::open(dir.path().join("content")).unwrap(),
    )
    .unwrap();
    let puller = Puller::new(meta);
    let reference = format!("{host}/app:v1");

    let err = puller
        .pull("ns", &reference, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let heads = seen.lock().unwrap().clone();
    assert!(!heads.is_empty(), "the registry was asked");
    assert!(
        heads.iter().all(|h| !h.contains("authorization:")),
        "credentials sent without a provider:\n{heads:#?}"
    );

    // The same pull given the docker config explicitly sends them: the check above can fail.
    seen.lock().unwrap().clear();
    let opts = PullOptions {
        credentials: Some(Arc::new(DockerConfig::of_this_user().unwrap())),
        ..PullOptions::default()
    };
    let _ = puller.pull("ns", &reference, &opts, &NoProgress).await;
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.contains(&format!("authorization: basic {}", auth.to_lowercase()))),
        "the docker config's credentials were not sent:\n{heads:#?}"
    );
}
