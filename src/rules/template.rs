//! `summary` templates: text with `{{name}}` holes for computed values,
//! group_by labels, `rule`, `team`, `severity` and `state`.

use crate::model::Ordered;

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

pub const BUILTIN_VARS: &[&str] = &["rule", "team", "severity", "state"];

impl Template {
    /// Parses `src`; every hole must name one of `known`. On error returns
    /// the byte offset of the hole at fault and what is wrong.
    pub fn parse(src: &str, known: &[&str]) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find("}}") else {
                return Err((offset + open, "`{{` without a closing `}}`".into()));
            };
            let name = rest[open + 2..open + close].trim();
            if !known.contains(&name) {
                let mut msg = format!("unknown name `{name}` in summary");
                if let Some(s) = crate::rules::expr::suggest(name, known.iter().copied()) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                } else {
                    msg.push_str(&format!("; known: {}", known.join(", ")));
                }
                return Err((offset + open, msg));
            }
            parts.push(Part::Var(name.to_string()));
            offset += open + close + 2;
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Fills the holes. A value the period did not produce renders as `n/a`.
    pub fn render(
        &self,
        values: &Ordered<f64>,
        labels: &Ordered<String>,
        builtins: &[(&str, &str)],
    ) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => {
                    if let Some(v) = values.get(name) {
                        out.push_str(&format_number(*v));
                    } else if let Some(v) = labels.get(name) {
                        out.push_str(v);
                    } else if let Some((_, v)) = builtins.iter().find(|(k, _)| k == name) {
                        out.push_str(v);
                    } else {
                        out.push_str("n/a");
                    }
                }
            }
        }
        out
    }
}

/// `85`, `85.33`, `0.05`: at most two decimals, no trailing zeros.
pub fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_values_labels_and_builtins() {
        let t = Template::parse(
            "CPU {{cpu}}% on {{ InstanceId }} ({{team}}) {{gone}}",
            &["cpu", "InstanceId", "team", "gone"],
        )
        .unwrap();
        let values = Ordered(vec![("cpu".into(), 85.333)]);
        let labels = Ordered(vec![("InstanceId".into(), "i-1".into())]);
        assert_eq!(
            t.render(&values, &labels, &[("team", "platform")]),
            "CPU 85.33% on i-1 (platform) n/a"
        );
    }

    #[test]
    fn rejects_unknown_names_with_their_offset() {
        let err = Template::parse("CPU {{cpuu}}", &["cpu"]).unwrap_err();
        assert_eq!(err.0, 4);
        assert!(err.1.contains("did you mean `cpu`"), "{}", err.1);
        assert!(Template::parse("CPU {{cpu", &["cpu"]).is_err());
    }

    #[test]
    fn numbers_read_well() {
        for (v, s) in [
            (85.0, "85"),
            (85.333, "85.33"),
            (0.05, "0.05"),
            (1.5, "1.5"),
            (-0.001, "0"),
            (f64::NAN, "n/a"),
        ] {
            assert_eq!(format_number(v), s);
        }
    }
}
