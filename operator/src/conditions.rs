//! Standard `metav1.Condition`s in status: set one without moving its transition
//! time when its status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets the condition `type_` in `conditions`: its transition time changes only when
/// its status does, so that a status written again unchanged is equal to the old one.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(jiff::Timestamp::now());
            }
            existing.status = status;
            existing.reason = reason.to_owned();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: Time(jiff::Timestamp::now()),
        }),
    }
}

/// The condition `type_`, if set.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition `type_` is False and was set for `generation`: the
/// operator tried the current spec and failed, and waits for a new spec.
pub fn failed_at(conditions: &[Condition], type_: &str, generation: Option<i64>) -> bool {
    get(conditions, type_)
        .is_some_and(|c| c.status == "False" && c.observed_generation == generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut conditions = Vec::new();
        set(&mut conditions, "Ready", true, "Healthy", "", Some(1));
        let first = conditions[0].last_transition_time.clone();
        set(&mut conditions, "Ready", true, "Healthy", "still", Some(2));
        assert_eq!(conditions[0].last_transition_time, first);
        assert_eq!(conditions[0].message, "still");
        std::thread::sleep(std::time::Duration::from_millis(2));
        set(&mut conditions, "Ready", false, "Unhealthy", "x", Some(2));
        assert_ne!(conditions[0].last_transition_time, first);
        assert!(failed_at(&conditions, "Ready", Some(2)));
        assert!(!failed_at(&conditions, "Ready", Some(3)));
        assert_eq!(conditions.len(), 1);
    }
}
