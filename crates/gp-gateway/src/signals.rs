//! Process signals the gateway listens for besides shutdown: a leaf, so every module that
//! reloads something on SIGHUP can use it.

/// SIGHUPs, which ask for a reload (the supplier registry, the TLS certificate, the
/// terminology maps). Where there are no such signals, or none can be listened for, none
/// ever arrives.
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Starts listening.
    pub fn listen() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// The next SIGHUP.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
