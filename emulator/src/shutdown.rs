//! Shutdown as one piece: a signal that the listeners (plain and TLS) and the delivery workers
//! all take, so stopping the emulator stops everything it started, in one place.

use std::sync::Arc;
use tokio::sync::watch;

/// Triggered once; every clone sees it. Cheap to clone and to wait on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Tells everything that waits on this signal to stop; later calls do nothing.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once [`Shutdown::trigger`] was called (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // the sender lives in `self`, so the channel cannot close while we wait
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger_even_after_it() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.clone();
        let waiting = tokio::spawn(async move { waiter.triggered().await });
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        waiting.await.unwrap();
        // a late waiter returns at once
        shutdown.clone().triggered().await;
        assert!(shutdown.is_triggered());
    }
}
