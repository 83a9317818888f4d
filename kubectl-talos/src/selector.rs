//! The kubectl label-selector syntax (`a=b,c!=d,e in (x,y),f notin (z),!g,h`), parsed
//! into the `LabelSelector` a TalosUpgrade's `spec.nodeSelector` holds.
//!
//! Equality goes to `matchLabels` (when the key has no other equality), everything
//! else to `matchExpressions`, in the order written.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::{Error, Result};

/// Parses `text` (kubectl's `-l` syntax). An empty selector selects everything.
pub fn parse(text: &str) -> Result<LabelSelector> {
    let fail = |reason: String| Error::Selector {
        selector: text.to_owned(),
        reason,
    };
    let mut labels = BTreeMap::new();
    let mut expressions = Vec::new();
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    parser.skip_spaces();
    if parser.done() {
        return Ok(LabelSelector::default());
    }
    loop {
        let requirement = parser.requirement().map_err(fail)?;
        match requirement {
            Requirement::Equals(key, value) if !labels.contains_key(&key) => {
                labels.insert(key, value);
            }
            Requirement::Equals(key, value) => expressions.push(expression(key, "In", vec![value])),
            Requirement::Expression(e) => expressions.push(e),
        }
        parser.skip_spaces();
        if parser.done() {
            break;
        }
        if !parser.eat(',') {
            return Err(fail(format!("expected ',' at {}", parser.where_())));
        }
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

/// One parsed requirement.
enum Requirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// Everything else.
    Expression(LabelSelectorRequirement),
}

fn expression(key: String, operator: &str, values: Vec<String>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key,
        operator: operator.to_owned(),
        values: (!values.is_empty()).then_some(values),
    }
}

/// A cursor over the selector's characters.
struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn done(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn where_(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?} (character {})", self.at + 1),
            None => "the end".to_owned(),
        }
    }

    /// A run of the characters keys and values are made of.
    fn word(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn key(&mut self) -> Result<String, String> {
        self.skip_spaces();
        let key = self.word();
        if key.is_empty() {
            return Err(format!("expected a label key at {}", self.where_()));
        }
        check_key(&key)?;
        Ok(key)
    }

    fn value(&mut self) -> Result<String, String> {
        self.skip_spaces();
        let value = self.word();
        check_value(&value)?;
        Ok(value)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        self.skip_spaces();
        if self.eat('!') {
            let key = self.key()?;
            return Ok(Requirement::Expression(expression(
                key,
                "DoesNotExist",
                vec![],
            )));
        }
        let key = self.key()?;
        self.skip_spaces();
        if self.eat('=') {
            self.eat('=');
            return Ok(Requirement::Equals(key, self.value()?));
        }
        if self.eat('!') {
            if !self.eat('=') {
                return Err(format!("expected '!=' at {}", self.where_()));
            }
            let value = self.value()?;
            return Ok(Requirement::Expression(expression(
                key,
                "NotIn",
                vec![value],
            )));
        }
        if self.done() || self.peek() == Some(',') {
            return Ok(Requirement::Expression(expression(key, "Exists", vec![])));
        }
        let operator = match self.word().as_str() {
            "in" => "In",
            "notin" => "NotIn",
            "" => {
                return Err(format!(
                    "expected '=', '==', '!=', 'in' or 'notin' after {key:?} at {}",
                    self.where_()
                ));
            }
            other => {
                return Err(format!(
                    "expected '=', '==', '!=', 'in' or 'notin' after {key:?}, found {other:?}"
                ));
            }
        };
        self.skip_spaces();
        if !self.eat('(') {
            return Err(format!(
                "expected '(' after {operator:?} at {}",
                self.where_()
            ));
        }
        let mut values = Vec::new();
        self.skip_spaces();
        if self.peek() == Some(')') {
            return Err(format!("{operator:?} needs at least one value"));
        }
        loop {
            values.push(self.value()?);
            self.skip_spaces();
            if self.eat(')') {
                break;
            }
            if !self.eat(',') {
                return Err(format!("expected ',' or ')' at {}", self.where_()));
            }
        }
        Ok(Requirement::Expression(expression(key, operator, values)))
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters.
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid {
            return Err(format!("{key:?}: the key's prefix must be a DNS subdomain"));
        }
    }
    if name.is_empty() || !is_name(name) {
        return Err(format!(
            "{key:?}: a label key's name is 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or like a key's name.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?}: a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_name(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> serde_json::Value {
        serde_json::to_value(parse(text).unwrap()).unwrap()
    }

    #[test]
    fn every_form_of_kubectls_syntax() {
        assert_eq!(
            parsed("a=b,c!=d,e in (x,y),!f,g"),
            json!({
                "matchLabels": {"a": "b"},
                "matchExpressions": [
                    {"key": "c", "operator": "NotIn", "values": ["d"]},
                    {"key": "e", "operator": "In", "values": ["x", "y"]},
                    {"key": "f", "operator": "DoesNotExist"},
                    {"key": "g", "operator": "Exists"}
                ]
            })
        );
    }

    #[test]
    fn spaces_double_equals_notin_and_prefixes() {
        assert_eq!(
            parsed(
                " pool == workers , topology.kubernetes.io/zone notin ( z1 , z2 ) , talos.dev/role"
            ),
            json!({
                "matchLabels": {"pool": "workers"},
                "matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["z1", "z2"]},
                    {"key": "talos.dev/role", "operator": "Exists"}
                ]
            })
        );
    }

    #[test]
    fn a_repeated_key_and_an_empty_value() {
        assert_eq!(
            parsed("a=b,a=c,d="),
            json!({
                "matchLabels": {"a": "b", "d": ""},
                "matchExpressions": [{"key": "a", "operator": "In", "values": ["c"]}]
            })
        );
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        assert_eq!(parsed(""), json!({}));
        assert_eq!(parsed("  "), json!({}));
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        let error = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            error("a=b,"),
            r#"label selector "a=b,": expected a label key at the end"#
        );
        assert_eq!(
            error("a in x"),
            r#"label selector "a in x": expected '(' after "In" at 'x' (character 6)"#
        );
        assert!(error("a in (x,y").contains("expected ',' or ')' at the end"));
        assert_eq!(
            error("a > 3"),
            r#"label selector "a > 3": expected '=', '==', '!=', 'in' or 'notin' after "a" at '>' (character 3)"#
        );
        assert!(error("a like (x)").contains(r#"found "like""#));
        assert!(error("-a=b").contains("label key's name"));
        assert!(error("a=b c").contains("expected ','"));
        assert!(error("Bad_Prefix/a=b").contains("prefix must be a DNS subdomain"));
        assert!(error(&format!("a={}", "v".repeat(64))).contains("label value"));
        assert!(error("a!b").contains("expected '!='"));
        assert_eq!(
            error("a in ( )"),
            r#"label selector "a in ( )": "In" needs at least one value"#
        );
    }
}
