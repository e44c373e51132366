//! The stop signal every task of the reconciler watches.

use tokio::sync::watch;

/// Resolves once `stop` turns true (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_on_stop_and_when_the_sender_is_gone() {
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).unwrap();
        stopped(&mut rx).await;
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        stopped(&mut rx).await;
    }
}
