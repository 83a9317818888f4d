//! Dependency order of services.
//!
//! Config validation rejects cycles and unknown dependencies, but the supervisor does
//! not rely on it: unknown dependencies are ignored here and a cycle is broken by
//! putting all its members in one level, so ordering always terminates.

use std::collections::HashMap;

use machine_config::ServiceSpec;

/// Groups `specs` (by index) into levels: level 0 has no dependencies among `specs`, and
/// every service is in a later level than each of its dependencies.
///
/// Starting goes level by level forwards; stopping goes backwards (dependents first).
/// Within a level, services keep their config order.
pub(super) fn levels(specs: &[&ServiceSpec]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| (spec.name.as_str(), i))
        .collect();
    let mut placed = vec![false; specs.len()];
    let mut remaining: Vec<usize> = (0..specs.len()).collect();
    let mut levels = Vec::new();
    while !remaining.is_empty() {
        let (ready, blocked): (Vec<usize>, Vec<usize>) = remaining.iter().partition(|&&i| {
            specs[i]
                .depends_on
                .iter()
                .filter_map(|dep| index.get(dep.as_str()))
                .all(|&dep| placed[dep])
        });
        // Nothing ready means a cycle: place the rest together rather than loop forever.
        let (level, rest) = if ready.is_empty() {
            (blocked, Vec::new())
        } else {
            (ready, blocked)
        };
        for &i in &level {
            placed[i] = true;
        }
        levels.push(level);
        remaining = rest;
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine_config::{HumanDuration, RestartPolicy};
    use std::time::Duration;

    fn spec(name: &str, deps: &[&str]) -> ServiceSpec {
        ServiceSpec {
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
            restart: RestartPolicy::Never,
            stop_timeout: HumanDuration(Duration::from_secs(1)),
            ..ServiceSpec::process(name, vec!["true".into()])
        }
    }

    fn names(specs: &[ServiceSpec]) -> Vec<Vec<&str>> {
        let refs: Vec<&ServiceSpec> = specs.iter().collect();
        levels(&refs)
            .into_iter()
            .map(|level| level.into_iter().map(|i| specs[i].name.as_str()).collect())
            .collect()
    }

    #[test]
    fn orders_a_chain_and_a_diamond() {
        let specs = [
            spec("app", &["db", "cache"]),
            spec("cache", &["net"]),
            spec("db", &["net"]),
            spec("net", &[]),
            spec("lone", &[]),
        ];
        assert_eq!(
            names(&specs),
            vec![vec!["net", "lone"], vec!["cache", "db"], vec!["app"]]
        );
    }

    #[test]
    fn ignores_unknown_dependencies() {
        let specs = [spec("a", &["ghost"]), spec("b", &["a"])];
        assert_eq!(names(&specs), vec![vec!["a"], vec!["b"]]);
    }

    #[test]
    fn terminates_on_cycles() {
        let specs = [
            spec("root", &[]),
            spec("x", &["y", "root"]),
            spec("y", &["x"]),
            spec("me", &["me"]),
        ];
        assert_eq!(names(&specs), vec![vec!["root"], vec!["x", "y", "me"]]);
    }
}
