//! Deadlines for the commands that wait for the operator (`reboot --wait`,
//! `apply-config`, `rollout status --watch`).
//!
//! They poll with `get` once a second rather than watch: it needs only the `get`
//! permission, survives API server restarts without bookkeeping, and a second is
//! nothing next to a reboot or a rollout.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// How often an awaited object is read again.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// When to give up waiting; `None` timeout: never.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The timeout and the instant it runs out.
    limit: Option<(Duration, Instant)>,
}

impl Deadline {
    /// A deadline `timeout` from now (`None`: no deadline).
    pub fn after(timeout: Option<Duration>) -> Self {
        Deadline {
            limit: timeout.map(|t| (t, Instant::now() + t)),
        }
    }

    /// Sleeps until the next poll, or fails with [`Error::Timeout`] naming `what` once
    /// the deadline has passed.
    pub async fn tick(&self, what: impl FnOnce() -> String) -> Result<()> {
        if let Some((timeout, end)) = self.limit {
            let now = Instant::now();
            if now >= end {
                return Err(Error::Timeout {
                    what: what(),
                    after: timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL.min(end - now)).await;
        } else {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_passed_deadline_names_what_was_awaited() {
        let deadline = Deadline::after(Some(Duration::from_millis(50)));
        deadline.tick(|| unreachable!()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let error = deadline.tick(|| "n1 to be Ready".into()).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 50ms waiting for n1 to be Ready"
        );
    }
}
