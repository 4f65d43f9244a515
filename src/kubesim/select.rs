//! Label and field selectors for list and watch.

use super::discovery::{self, ResourceType};
use super::http::DNS1123_SUBDOMAIN;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Requirement::Equals(k, v) => get(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        }
    }
}

/// Split on commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, got {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse(s: &str, allow_sets: bool) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for term in terms(s) {
        let req = if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==") {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once('=') {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if allow_sets && let Some((k, v)) = term.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set_values(v)?)
        } else if allow_sets && let Some((k, v)) = term.split_once(" in ") {
            Requirement::In(k.trim().into(), set_values(v)?)
        } else if allow_sets && let Some(k) = term.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else if allow_sets && !term.contains(char::is_whitespace) {
            Requirement::Exists(term.into())
        } else {
            return Err(format!("unable to parse requirement: {term:?}"));
        };
        out.push(req);
    }
    Ok(out)
}

/// Label keys and values as kube-apiserver's selector parser accepts them,
/// so a malformed selector is a 400 rather than one that silently matches nothing.
fn check_label_requirement(req: &Requirement) -> Result<(), String> {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("a valid pattern")
    });
    let (key, values): (&str, Vec<&str>) = match req {
        Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, vec![v.as_str()]),
        Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
            (k, vs.iter().map(String::as_str).collect())
        }
        Requirement::Exists(k) | Requirement::NotExists(k) => (k, vec![]),
    };
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.len() > 63
        || !NAME.is_match(name)
        || prefix.is_some_and(|p| p.len() > 253 || !DNS1123_SUBDOMAIN.is_match(p))
    {
        return Err(format!(
            "unable to parse requirement: key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    for v in values {
        if v.len() > 63 || !(v.is_empty() || NAME.is_match(v)) {
            return Err(format!(
                "unable to parse requirement: values[0][{key}]: Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            ));
        }
    }
    Ok(())
}

/// A parsed `labelSelector` plus `fieldSelector`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selector {
    /// `extra_fields` are the field labels the resource supports beyond
    /// `metadata.name` and `metadata.namespace` (kube-apiserver refuses others).
    pub(crate) fn parse(
        labels: Option<&str>,
        fields: Option<&str>,
        extra_fields: &[&str],
    ) -> Result<Selector, String> {
        let labels = parse(labels.unwrap_or(""), true)?;
        for l in &labels {
            check_label_requirement(l)?;
        }
        let fields = parse(fields.unwrap_or(""), false)?;
        for f in &fields {
            let key = match f {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => k,
                _ => return Err("field selectors support only =, == and !=".into()),
            };
            if key != "metadata.name"
                && key != "metadata.namespace"
                && !extra_fields.contains(&key.as_str())
            {
                return Err(format!("field label not supported: {key}"));
            }
        }
        Ok(Selector { labels, fields })
    }

    /// Whether a stored object matches, as the resource's API shows it (an
    /// `events.k8s.io` Event's fields are named differently from storage's);
    /// other kinds are matched as stored, without a copy.
    pub(crate) fn matches_in(&self, t: &ResourceType, stored: &Value) -> bool {
        if t.is_event_v1() {
            self.matches(&discovery::convert_event(stored, true))
        } else {
            self.matches(stored)
        }
    }

    /// No label or field requirement: everything matches.
    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let field = |k: &str| {
            let pointer = format!("/{}", k.replace('.', "/"));
            match obj.pointer(&pointer) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => Some(String::new()),
                Some(other) => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|r| r.matches(&label))
            && self.fields.iter().all(|r| r.matches(&field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x", "tier": "web"}}});
        let yes = [
            "app=x",
            "app==x,tier",
            "tier in (web, db)",
            "app notin (y)",
            "!missing",
            "app!=y",
        ];
        for s in yes {
            assert!(
                Selector::parse(Some(s), None, &[]).expect(s).matches(&obj),
                "{s}"
            );
        }
        for s in ["app=x y", "bad key=x", "app in (a b)", "-x"] {
            assert!(
                Selector::parse(Some(s), None, &[])
                    .err()
                    .is_some_and(|e| e.starts_with("unable to parse requirement")),
                "{s}"
            );
        }
        for s in ["app=y", "missing", "tier in (db)", "!app"] {
            assert!(
                !Selector::parse(Some(s), None, &[]).expect(s).matches(&obj),
                "{s}"
            );
        }
        let f = Selector::parse(None, Some("metadata.name=a,metadata.namespace!=other"), &[])
            .expect("parses");
        assert!(f.matches(&obj));
        assert_eq!(
            Selector::parse(None, Some("spec.x=1"), &[])
                .err()
                .as_deref(),
            Some("field label not supported: spec.x")
        );
    }
}
