//! The order in which the supervisor starts services: every service after the
//! services it depends on, otherwise in config order.

use std::collections::HashMap;

use crate::error::DependencyCycle;
use crate::types::{MachineConfig, ServiceSpec};

impl MachineConfig {
    /// The services in start order: each one after its `dependsOn` services, and
    /// otherwise in the order of the config. Stop in the reverse order.
    ///
    /// Unknown dependencies and self-dependencies are skipped here (validation reports
    /// them); a dependency cycle makes an order impossible and is an error.
    pub fn service_order(&self) -> Result<Vec<&ServiceSpec>, DependencyCycle> {
        start_order(&self.machine.services)
    }
}

/// [`MachineConfig::service_order`] for a plain list, so validation can use it too.
///
/// Each round places the first service, in config order, whose dependencies are all
/// placed: the result is the topological order closest to the config's. Service lists
/// are short, so the quadratic cost does not matter.
pub(crate) fn start_order(services: &[ServiceSpec]) -> Result<Vec<&ServiceSpec>, DependencyCycle> {
    let graph = Graph::new(services);
    let mut placed = vec![false; services.len()];
    let mut order = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        let ready = (0..services.len())
            .find(|&i| !placed[i] && graph.dependencies(i).all(|dependency| placed[dependency]));
        let Some(next) = ready else {
            return Err(graph.cycle(&placed));
        };
        placed[next] = true;
        order.push(&services[next]);
    }
    Ok(order)
}

/// The services as a graph: an edge from each service to each of its dependencies.
struct Graph<'a> {
    services: &'a [ServiceSpec],
    /// Index of the first service of each name.
    by_name: HashMap<&'a str, usize>,
}

impl<'a> Graph<'a> {
    fn new(services: &'a [ServiceSpec]) -> Self {
        let mut by_name = HashMap::new();
        for (index, service) in services.iter().enumerate() {
            by_name.entry(service.name.as_str()).or_insert(index);
        }
        Self { services, by_name }
    }

    /// The known dependencies of service `index`, other than itself.
    fn dependencies(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        self.services[index]
            .depends_on
            .iter()
            .filter_map(|name| self.by_name.get(name.as_str()).copied())
            .filter(move |&dependency| dependency != index)
    }

    /// A cycle among the services not `placed`, when none of them can be placed.
    ///
    /// Each of them then has a dependency that is not placed either, so following
    /// such dependencies from any of them must come back to a service already seen.
    fn cycle(&self, placed: &[bool]) -> DependencyCycle {
        let unplaced = |index: &usize| !placed[*index];
        let mut path = Vec::new();
        let mut current = (0..self.services.len())
            .find(unplaced)
            // Only called while some services are not placed.
            .expect("some service is not placed");
        let start = loop {
            if let Some(start) = path.iter().position(|&index| index == current) {
                break start;
            }
            path.push(current);
            current = self
                .dependencies(current)
                .find(unplaced)
                // No unplaced service is ready: each has an unplaced dependency.
                .expect("a service that cannot be placed has an unplaced dependency");
        };
        let names = path[start..]
            .iter()
            .chain([&current])
            .map(|&index| self.services[index].name.clone());
        DependencyCycle(names.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::full_bundle;

    fn config_with(services: &[(&str, &[&str])]) -> MachineConfig {
        let mut config = full_bundle().config;
        let template = config.machine.services[0].clone();
        config.machine.services = services
            .iter()
            .map(|(name, depends_on)| ServiceSpec {
                name: (*name).to_owned(),
                depends_on: depends_on.iter().map(|&d| d.to_owned()).collect(),
                ..template.clone()
            })
            .collect();
        config
    }

    fn order(services: &[(&str, &[&str])]) -> Result<Vec<String>, DependencyCycle> {
        let config = config_with(services);
        let order = config.service_order()?;
        Ok(order
            .into_iter()
            .map(|service| service.name.clone())
            .collect())
    }

    #[test]
    fn dependencies_come_first_and_config_order_is_kept() {
        assert_eq!(
            order(&[
                ("web", &["api"]),
                ("log", &[]),
                ("api", &["db", "log"]),
                ("db", &[])
            ])
            .unwrap(),
            ["log", "db", "api", "web"]
        );
        assert_eq!(
            order(&[("a", &[]), ("b", &[]), ("c", &[])]).unwrap(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn unknown_and_self_dependencies_are_left_to_validation() {
        assert_eq!(
            order(&[("a", &["a", "ghost"]), ("b", &["a"])]).unwrap(),
            ["a", "b"]
        );
    }

    #[test]
    fn cycles_are_named() {
        let cycle = order(&[("x", &[]), ("a", &["b"]), ("b", &["c"]), ("c", &["a"])]).unwrap_err();
        assert_eq!(cycle.to_string(), "dependency cycle a -> b -> c -> a");
    }
}
