//! The talos-operator: reconciles TalosNodes and TalosUpgrades through the node agents.
