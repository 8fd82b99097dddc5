//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Rule files are read into this tree first and then into typed rules by
//! hand, so that every error (a YAML syntax error, an unknown field, a typo in
//! a function name inside an expression) can name `file:line:col`.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based position in a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar's text; `quoted` when it was written in quotes or as a block.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>),
}

/// Parses one YAML document. An empty file is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let done = match ev {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos: pos(&span),
                        message: "only one YAML document per file is supported".into(),
                    });
                }
                None
            }
            Event::Alias(_) => {
                return Err(SyntaxError {
                    pos: pos(&span),
                    message: "YAML aliases (*name) are not supported in klaxon files".into(),
                })
            }
            Event::Scalar(text, style, _, _) => Some(Node {
                value: Value::Scalar {
                    text: Cow::into_owned(text),
                    quoted: !matches!(style, ScalarStyle::Plain),
                },
                pos: pos(&span),
            }),
            Event::SequenceStart(..) => {
                stack.push(Frame::Seq(pos(&span), Vec::new()));
                None
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Map(pos(&span), Vec::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items)) => Some(Node {
                    value: Value::Seq(items),
                    pos: p,
                }),
                _ => unreachable!("parser emits balanced events"),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, items, _)) => Some(Node {
                    value: Value::Map(items),
                    pos: p,
                }),
                _ => unreachable!("parser emits balanced events"),
            },
            _ => None,
        };
        if let Some(node) = done {
            match stack.last_mut() {
                Some(Frame::Seq(_, items)) => items.push(node),
                Some(Frame::Map(_, items, key)) => match key.take() {
                    Some(k) => items.push((k, node)),
                    None => *key = Some(node),
                },
                None => root = Some(node),
            }
        }
    }
    Ok(root.unwrap_or(Node {
        value: Value::Map(Vec::new()),
        pos: Pos { line: 1, col: 1 },
    }))
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(v) => Some(v),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Where the `i`th byte of this scalar's text was written, when the scalar
    /// sits on one line (so that an error can point inside an expression).
    pub fn pos_at(&self, byte: usize) -> Pos {
        match &self.value {
            Value::Scalar { text, quoted } if !text.contains('\n') => Pos {
                line: self.pos.line,
                col: self.pos.col
                    + usize::from(*quoted)
                    + text[..byte.min(text.len())].chars().count(),
            },
            _ => self.pos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = parse("team: a\nrules:\n  - name: x\n    where: 'v > 1'\n").unwrap();
        assert_eq!(doc.get("team").unwrap().pos, Pos { line: 1, col: 7 });
        let rule = &doc.get("rules").unwrap().as_seq().unwrap()[0];
        assert_eq!(rule.pos, Pos { line: 3, col: 5 });
        let w = rule.get("where").unwrap();
        assert_eq!(w.pos, Pos { line: 4, col: 12 });
        assert_eq!(
            w.pos_at(2),
            Pos { line: 4, col: 15 },
            "inside the quotes, at `>`"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("team: a\nrules:\n  - name: [x\n").unwrap_err();
        assert!(err.pos.line >= 3, "{err:?}");
        assert!(parse("a: *b\n").is_err());
        assert!(parse("").unwrap().as_map().unwrap().is_empty());
    }
}
