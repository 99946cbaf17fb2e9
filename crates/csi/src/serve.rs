//! Serving a driver of Skiff's own as an external one is served: its CSI
//! services on `plugins/<name>/csi.sock`, and its registration socket in
//! `plugins_registry`, where the kubelet's plugin watcher finds it.

use std::path::PathBuf;

use anyhow::Result;
use tonic::{Request, Response, Status};

use crate::pb::csi::{controller_server, identity_server, node_server};
use crate::pb::registration::{self as reg, registration_server};
use crate::Paths;

/// Starts `driver` on its socket and announces it; serves until the process ends.
pub fn serve<D>(paths: &Paths, name: &'static str, driver: D) -> Result<()>
where
    D: identity_server::Identity + controller_server::Controller + node_server::Node + Clone + Send + Sync + 'static,
{
    let endpoint = paths.plugin(name).join("csi.sock");
    let incoming = crate::socket::listen(&endpoint)?;
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(identity_server::IdentityServer::new(driver.clone()))
            .add_service(controller_server::ControllerServer::new(driver.clone()))
            .add_service(node_server::NodeServer::new(driver))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            tracing::error!("{name}: {e}");
        }
    });
    let announce = Announce { name: name.into(), endpoint };
    let incoming = crate::socket::listen(&paths.registry().join(format!("{name}-reg.sock")))?;
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder().add_service(registration_server::RegistrationServer::new(announce)).serve_with_incoming(incoming).await {
            tracing::error!("{name} registration: {e}");
        }
    });
    Ok(())
}

/// A CSI plugin's registration service, as node-driver-registrar serves it.
struct Announce {
    name: String,
    endpoint: PathBuf,
}

#[tonic::async_trait]
impl registration_server::Registration for Announce {
    async fn get_info(&self, _: Request<reg::InfoRequest>) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: "CSIPlugin".into(),
            name: self.name.clone(),
            endpoint: self.endpoint.to_string_lossy().into_owned(),
            supported_versions: crate::SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }))
    }

    async fn notify_registration_status(&self, request: Request<reg::RegistrationStatus>) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if !status.plugin_registered {
            tracing::error!("{}: the kubelet refused the registration: {}", self.name, status.error);
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}

