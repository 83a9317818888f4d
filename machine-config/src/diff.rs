//! Readable differences between two configurations, for dry runs.

use similar::TextDiff;

use crate::bundle::ConfigBundle;

/// What a changed secret is shown as in the new config, so that a dry run tells that
/// it changes without showing either value.
pub const REDACTED_CHANGED: &str = "<redacted, changed>";

/// A unified diff of the running config and a new one, headed `--- running` /
/// `+++ new`; empty when nothing changes.
///
/// Both sides are redacted, so the output never holds the CA key or the token; a
/// changed secret appears as [`REDACTED`](crate::REDACTED) replaced by
/// [`REDACTED_CHANGED`].
pub fn diff(old: &ConfigBundle, new: &ConfigBundle) -> String {
    let running = old.redacted().to_yaml();
    let mut shown = new.redacted();
    if new.secrets.token != old.secrets.token {
        shown.secrets.token = REDACTED_CHANGED.to_owned();
    }
    if let (Some(old_key), Some(new_key), Some(shown_key)) = (
        &old.secrets.ca.key,
        &new.secrets.ca.key,
        &mut shown.secrets.ca.key,
    ) && old_key != new_key
    {
        *shown_key = REDACTED_CHANGED.to_owned();
    }
    let shown = shown.to_yaml();
    TextDiff::from_lines(&running, &shown)
        .unified_diff()
        .header("running", "new")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::full_bundle;
    use crate::types::REDACTED;

    #[test]
    fn equal_configs_have_an_empty_diff() {
        assert_eq!(diff(&full_bundle(), &full_bundle()), "");
    }

    #[test]
    fn shows_changes_under_running_and_new_headers() {
        let old = full_bundle();
        let mut new = old.clone();
        new.config.machine.hostname = Some("cp-2".to_owned());
        let text = diff(&old, &new);
        assert!(text.starts_with("--- running\n+++ new\n@@ "), "{text}");
        assert!(
            text.contains("\n-  hostname: cp-1\n+  hostname: cp-2\n"),
            "{text}"
        );
    }

    #[test]
    fn never_shows_secrets_but_shows_that_they_change() {
        let old = full_bundle();
        let mut new = old.clone();
        new.secrets.token = "fedcba9876543210fedcba9876543210".to_owned();
        new.secrets.ca.key = Some("-----BEGIN PRIVATE KEY-----\nnewkey\n".to_owned());
        let text = diff(&old, &new);
        for secret in [&old.secrets.token, &new.secrets.token] {
            assert!(!text.contains(secret.as_str()), "{text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for line in [
            format!("\n-  key: {REDACTED}\n"),
            format!("\n-token: {REDACTED}\n"),
            format!("\n+  key: {REDACTED_CHANGED}\n"),
            format!("\n+token: {REDACTED_CHANGED}\n"),
        ] {
            assert!(text.contains(&line), "{text} lacks {line:?}");
        }
    }
}
