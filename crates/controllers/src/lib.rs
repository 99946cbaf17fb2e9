//! The controller manager: workload controllers as API clients (the kube
//! crate's watchers, reflectors and controller runtime), run by whichever
//! server holds the `kube-controller-manager` Lease.

mod common;
mod deployment;
mod gc;
mod leader;
mod replicaset;

/// Runs the controllers while this process leads; forever.
pub async fn run(client: kube::Client, identity: String) {
    let elector = leader::Elector::new(client.clone(), "kube-controller-manager", identity);
    loop {
        elector.acquire().await;
        tracing::info!("leading: controllers started");
        let controllers = [
            tokio::spawn(replicaset::run(client.clone())),
            tokio::spawn(deployment::run(client.clone())),
            tokio::spawn(gc::run(client.clone())),
        ];
        elector.hold().await;
        tracing::warn!("lost leadership: controllers stopped");
        for c in controllers {
            c.abort();
        }
    }
}
