//! The shutdown signal shared by long-lived tasks: a watch flag that turns
//! true once, when the agent starts to stop.

use tokio::sync::watch;

/// Resolves once shutdown has started (or the flag's sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
