//! The maintenance window: a cron expression for when it opens, a duration, and a
//! time zone.

use std::str::FromStr;

use crds::MaintenanceWindow;
use croner::Cron;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use super::plan::Window;

/// Whether the window is open at `now`; when it is closed, the message says when it
/// opens next. A window without `start` is always open.
pub fn check(window: &MaintenanceWindow, now: Timestamp) -> Result<Window, String> {
    let (Some(start), Some(duration)) = (&window.start, &window.duration) else {
        return Ok(Window::Open);
    };
    let zone = TimeZone::get(&window.time_zone)
        .map_err(|e| format!("maintenanceWindow.timeZone {:?}: {e}", window.time_zone))?;
    let cron =
        Cron::from_str(start).map_err(|e| format!("maintenanceWindow.start {start:?}: {e}"))?;
    let length = crate::duration::parse(duration)
        .map_err(|e| format!("maintenanceWindow.duration: {e}"))
        .and_then(|d| SignedDuration::try_from(d).map_err(|e| e.to_string()))?;
    let local = now.to_zoned(zone);
    if let Ok(opened) = cron.find_previous_occurrence(&local, true)
        && opened.timestamp() + length > now
    {
        return Ok(Window::Open);
    }
    let next = cron
        .find_next_occurrence(&local, false)
        .map_err(|e| format!("maintenanceWindow.start {start:?} never matches: {e}"))?;
    Ok(Window::Closed(format!(
        "outside the maintenance window ({start} for {duration}, {}); it opens next at {}",
        window.time_zone,
        next.strftime("%Y-%m-%dT%H:%M:%S%:z")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: &str, duration: &str, zone: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            start: Some(start.into()),
            duration: Some(duration.into()),
            time_zone: zone.into(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn open_inside_closed_outside() {
        // Saturdays 02:00 for 4 hours, UTC. 2026-11-28 is a Saturday.
        let w = window("0 2 * * 6", "4h", "UTC");
        assert_eq!(check(&w, at("2026-11-28T03:59:00Z")), Ok(Window::Open));
        assert_eq!(check(&w, at("2026-11-28T02:00:00Z")), Ok(Window::Open));
        let Ok(Window::Closed(why)) = check(&w, at("2026-11-28T06:00:00Z")) else {
            panic!("open after the 4 hours");
        };
        assert!(
            why.contains("opens next at 2026-12-05T02:00:00+00:00"),
            "{why}"
        );
        assert!(matches!(
            check(&w, at("2026-11-27T12:00:00Z")),
            Ok(Window::Closed(_))
        ));
    }

    #[test]
    fn the_time_zone_moves_the_window() {
        let w = window("0 2 * * *", "1h", "Europe/Paris");
        // 02:30 in Paris (winter, UTC+1) is 01:30 UTC.
        assert_eq!(check(&w, at("2026-11-28T01:30:00Z")), Ok(Window::Open));
        assert!(matches!(
            check(&w, at("2026-11-28T02:30:00Z")),
            Ok(Window::Closed(_))
        ));
    }

    #[test]
    fn no_start_means_always_open_and_bad_input_is_named() {
        let always = MaintenanceWindow {
            start: None,
            duration: None,
            time_zone: "UTC".into(),
        };
        assert_eq!(check(&always, at("2026-11-28T01:30:00Z")), Ok(Window::Open));
        let err = check(
            &window("0 2 * * *", "1h", "Mars/Olympus"),
            at("2026-11-28T01:30:00Z"),
        );
        assert!(err.unwrap_err().contains("Mars/Olympus"));
        let err = check(
            &window("61 2 * * *", "1h", "UTC"),
            at("2026-11-28T01:30:00Z"),
        );
        assert!(err.unwrap_err().contains("maintenanceWindow.start"));
    }
}
