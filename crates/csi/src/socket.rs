//! gRPC over unix sockets, both ways.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// A channel to the socket at `path`, connected on first use and again
/// after the driver restarts.
pub fn channel(path: &Path) -> Channel {
    let path: PathBuf = path.to_path_buf();
    // The URI is required by tonic and unused: the connector below dials.
    Endpoint::from_static("http://[::1]:50051").connect_with_connector_lazy(tower::service_fn(move |_| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(&path).await?)) }
    }))
}

/// A listener at `path`, replacing a socket a previous run left.
pub fn listen(path: &Path) -> Result<tokio_stream::wrappers::UnixListenerStream> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).with_context(|| format!("removing {}", path.display())),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    Ok(tokio_stream::wrappers::UnixListenerStream::new(listener))
}
