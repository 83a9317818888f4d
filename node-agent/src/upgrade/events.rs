//! The node's event log: what happened to it (boots, upgrades, rollbacks), kept in
//! memory for the Events RPC, which replays the retained events and then follows.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::broadcast;

/// Events retained for replay.
const RETAINED: usize = 256;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The node booted (slot and version in the message).
    Boot,
    /// An upgrade was installed into the other slot.
    Upgrade,
    /// A trial boot became healthy and its slot was kept.
    Confirmed,
    /// A trial boot did not become healthy; the node goes back to its previous slot.
    TrialFailed,
    /// This boot fell back from an installation that never became healthy.
    RolledBack,
    /// An operator asked to boot the other slot again.
    Rollback,
}

impl EventKind {
    /// The name the API and the CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Boot => "boot",
            EventKind::Upgrade => "upgrade",
            EventKind::Confirmed => "confirmed",
            EventKind::TrialFailed => "trial-failed",
            EventKind::RolledBack => "rolled-back",
            EventKind::Rollback => "rollback",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened.
    pub time: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// The details, in words.
    pub message: String,
    /// The OS version it concerns.
    pub version: String,
}

/// The retained events and the subscribers of new ones.
#[derive(Debug)]
pub struct EventLog {
    retained: Mutex<VecDeque<Event>>,
    new: broadcast::Sender<Event>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            retained: Mutex::new(VecDeque::with_capacity(RETAINED)),
            new: broadcast::channel(RETAINED).0,
        }
    }
}

impl EventLog {
    /// Records an event (and logs it).
    pub fn publish(&self, kind: EventKind, version: &str, message: impl Into<String>) {
        let event = Event {
            time: SystemTime::now(),
            kind,
            message: message.into(),
            version: version.to_owned(),
        };
        tracing::info!(event = kind.as_str(), version, "{}", event.message);
        let mut retained = self.lock();
        if retained.len() == RETAINED {
            retained.pop_front();
        }
        retained.push_back(event.clone());
        // Sent under the lock, so a subscriber never misses or repeats one.
        let _ = self.new.send(event);
    }

    /// The retained events, and a receiver of every later one.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let retained = self.lock();
        (retained.iter().cloned().collect(), self.new.subscribe())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.retained.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_the_past_then_the_new_without_gaps() {
        let log = EventLog::default();
        log.publish(EventKind::Boot, "1", "booted slot A");
        let (past, mut new) = log.subscribe();
        log.publish(EventKind::Upgrade, "2", "installed 2 into slot B");
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].kind, EventKind::Boot);
        assert_eq!(new.recv().await.unwrap().kind, EventKind::Upgrade);
        for i in 0..RETAINED + 5 {
            log.publish(EventKind::Boot, "1", format!("{i}"));
        }
        let (past, _) = log.subscribe();
        assert_eq!(past.len(), RETAINED);
        assert_eq!(past.last().unwrap().message, format!("{}", RETAINED + 4));
    }
}
