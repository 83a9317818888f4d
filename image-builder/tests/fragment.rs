//! kernel/config-fragment must state every KSPP requirement of kernel/kspp.toml that
//! exists for the kernel it targets, and meet no recommendation the data calls an
//! exception. Edit both files together.

use image_builder::fragment::{self, Problem};
use image_builder::{Recommendations, check};

const FRAGMENT: &str = include_str!("../../kernel/config-fragment");

#[test]
fn the_fragment_agrees_with_the_data() {
    let data = Recommendations::embedded().unwrap();
    let fragment = fragment::parse(FRAGMENT).unwrap();
    let problems: Vec<String> = fragment::problems(&data, &fragment)
        .iter()
        .map(Problem::to_string)
        .collect();
    assert!(
        problems.is_empty(),
        "kernel/config-fragment disagrees with kernel/kspp.toml:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_fragment_alone_meets_every_applicable_requirement() {
    let data = Recommendations::embedded().unwrap();
    let fragment = fragment::parse(FRAGMENT).unwrap();
    let score = check(&data, &fragment).score();
    assert_eq!(score.not_met, 0);
    assert_eq!(score.met + score.exceptions, score.applicable);
    // Only the exceptions the data lists, so more met than Talos' 95 of 119.
    assert_eq!(score.exceptions, 5);
}
