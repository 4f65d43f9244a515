//! A strict OpenMetrics text checker shared by the tests that scrape
//! `/metrics` (`mod openmetrics;`).

use std::collections::BTreeMap;

/// A strict reading of the OpenMetrics text format: every line is a
/// descriptor of a family or a sample of the family declared last, with a
/// name that fits the family's type; names and labels are well formed,
/// values are numbers, histogram buckets are cumulative and end in `+Inf`
/// equal to `_count`, and the text ends in `# EOF`. Returns every sample by
/// its series (`name{labels}` as written).
pub fn parse_openmetrics(text: &str) -> Result<BTreeMap<String, f64>, String> {
    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => s.parse().map_err(|_| format!("bad value {s:?}")),
        }
    }
    /// `{a="x",b="y"}` → pairs, and the rest of the line.
    type Labels = Vec<(String, String)>;
    fn labels(s: &str) -> Result<(Labels, &str), String> {
        let Some(mut rest) = s.strip_prefix('{') else {
            return Ok((Vec::new(), s));
        };
        let mut out = Vec::new();
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((out, after));
            }
            let eq = rest.find('=').ok_or("label without =")?;
            let name = &rest[..eq];
            if !valid_name(name) || name.contains(':') {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut val = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        'n' => val.push('\n'),
                        c @ ('"' | '\\') => val.push(c),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, c) => val.push(c),
                }
            };
            out.push((name.to_string(), val));
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("labels not separated by commas".into());
            }
        }
    }

    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end in `# EOF`")?;
    let mut samples = BTreeMap::new();
    let mut family: Option<(String, String)> = None;
    let mut declared = std::collections::HashSet::new();
    let mut sampled = false;
    // Histogram bucket state per series without `le`: (last le, last count).
    let mut buckets: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name
                .filter(|n| valid_name(n))
                .ok_or(format!("bad descriptor {line:?}"))?;
            if !matches!(kind, Some("TYPE" | "HELP" | "UNIT")) || arg.is_none() {
                return Err(format!("bad descriptor {line:?}"));
            }
            // A family's descriptors come together, before its samples.
            if family.as_ref().is_none_or(|(f, _)| f != name) || sampled {
                if !declared.insert(name.to_string()) {
                    return Err(format!("family {name} described twice or apart"));
                }
                family = Some((name.to_string(), "unknown".to_string()));
                sampled = false;
            }
            if let (Some("TYPE"), Some(t)) = (kind, arg) {
                if ![
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "info",
                    "stateset",
                    "unknown",
                    "gaugehistogram",
                ]
                .contains(&t)
                {
                    return Err(format!("unknown type in {line:?}"));
                }
                if let Some((_, ftype)) = family.as_mut() {
                    *ftype = t.to_string();
                }
            }
            continue;
        }
        sampled = true;
        let (fname, ftype) = family
            .as_ref()
            .ok_or(format!("sample before any TYPE: {line:?}"))?;
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("bad sample {line:?}"))?;
        let name = &line[..name_end];
        let suffix = name
            .strip_prefix(fname.as_str())
            .ok_or(format!("sample {name} outside its family {fname}"))?;
        let allowed: &[&str] = match ftype.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            _ => &[""],
        };
        if !allowed.contains(&suffix) {
            return Err(format!("{name} is not a valid {ftype} sample of {fname}"));
        }
        let (pairs, rest) = labels(&line[name_end..])?;
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or(format!("no value in {line:?}"))?
            .split(' ');
        let v = value(fields.next().unwrap_or_default())?;
        if let Some(ts) = fields.next() {
            value(ts)?;
        }
        if fields.next().is_some() {
            return Err(format!("trailing fields in {line:?}"));
        }
        let series = line[..line.len() - rest.len()].to_string();
        if samples.insert(series.clone(), v).is_some() {
            return Err(format!("series {series} repeated"));
        }
        let others: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "le")
            .map(|(k, val)| format!("{k}={val:?}"))
            .collect();
        let key = format!("{fname}{{{}}}", others.join(","));
        if suffix == "_bucket" {
            let le = pairs
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or(format!("bucket without le: {line:?}"))?;
            let le = value(&le.1)?;
            let (last_le, last_count) = buckets
                .get(&key)
                .copied()
                .unwrap_or((f64::NEG_INFINITY, 0.0));
            if le <= last_le || v < last_count {
                return Err(format!("buckets not cumulative at {line:?}"));
            }
            buckets.insert(key, (le, v));
        } else if suffix == "_count" && ftype == "histogram" {
            counts.insert(key, v);
        }
    }
    for (key, count) in counts {
        match buckets.get(&key) {
            Some((le, last)) if *le == f64::INFINITY && *last == count => {}
            _ => return Err(format!("{key}: no +Inf bucket equal to the count")),
        }
    }
    Ok(samples)
}
