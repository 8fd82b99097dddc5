//! Expressions: parsed by evalexpr (pinned to the MIT 11.3 line), then
//! either compiled to a small tree that runs per event without allocating
//! ([`Expr`], for `where` and aggregate arguments), or kept as an evalexpr
//! tree and run once per period ([`Formula`], for derived values and
//! `condition`).
//!
//! Numbers are always `f64`: integer literals are rewritten to floats and
//! every value is passed in as a float, so `errors / total` is a real
//! division and `1 == 1.0` holds.

use evalexpr::{
    build_operator_tree, ContextWithMutableVariables, HashMapContext, Node, Operator, Value,
};

use crate::model::{AggKind, Event, Field, Signal, Val};

/// Why an expression does not compile. `token` names the part at fault, so
/// the caller can point at its column.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    pub message: String,
    pub token: Option<String>,
}

impl ExprError {
    fn new(message: impl Into<String>, token: Option<&str>) -> Self {
        ExprError {
            message: message.into(),
            token: token.map(str::to_string),
        }
    }
}

/// Parses with evalexpr and turns integer literals into floats.
pub fn parse(src: &str) -> Result<Node, ExprError> {
    let mut tree =
        build_operator_tree(src).map_err(|e| ExprError::new(format!("syntax error: {e}"), None))?;
    floats(&mut tree);
    Ok(tree)
}

fn floats(node: &mut Node) {
    if let Operator::Const {
        value: Value::Int(i),
    } = node.operator()
    {
        let f = *i as f64;
        *node.operator_mut() = Operator::Const {
            value: Value::Float(f),
        };
    }
    for c in node.children_mut() {
        floats(c);
    }
}

/// A string function usable in `where`.
#[derive(Clone, Debug)]
pub enum Func {
    Contains,
    StartsWith,
    EndsWith,
    Matches(regex_lite::Regex),
}

pub const WHERE_FUNCTIONS: &[&str] = &["contains", "starts_with", "ends_with", "matches"];
pub const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "rate",
    "ratio",
    "percentile",
];
/// evalexpr built-ins allowed in `compute` and `condition`.
pub const FORMULA_FUNCTIONS: &[&str] = &[
    "min",
    "max",
    "floor",
    "round",
    "ceil",
    "if",
    "math::abs",
    "math::sqrt",
    "math::ln",
    "math::log10",
    "math::pow",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Neq,
    Gt,
    Lt,
    Geq,
    Leq,
    And,
    Or,
}

/// A per-event expression over one signal's fields.
#[derive(Clone, Debug)]
pub enum Expr {
    Num(f64),
    Str(Box<str>),
    Bool(bool),
    Field(Field),
    /// A label, field or attribute, by its bare name.
    Attr(Box<str>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

impl Expr {
    /// Compiles an evalexpr tree against `signal`'s fields.
    pub fn compile(node: &Node, signal: Signal) -> Result<Expr, ExprError> {
        let kids = node.children();
        let bin = |op: BinOp| -> Result<Expr, ExprError> {
            Ok(Expr::Bin(
                op,
                Box::new(Expr::compile(&kids[0], signal)?),
                Box::new(Expr::compile(&kids[1], signal)?),
            ))
        };
        Ok(match node.operator() {
            Operator::RootNode => match kids {
                [one] => Expr::compile(one, signal)?,
                [] => return Err(ExprError::new("empty expression", None)),
                _ => return Err(ExprError::new("expected one expression", None)),
            },
            Operator::Const { value } => match value {
                Value::Float(f) => Expr::Num(*f),
                Value::Int(i) => Expr::Num(*i as f64),
                Value::String(s) => Expr::Str(s.as_str().into()),
                Value::Boolean(b) => Expr::Bool(*b),
                other => {
                    return Err(ExprError::new(
                        format!("unsupported constant {other}"),
                        None,
                    ))
                }
            },
            Operator::VariableIdentifierRead { identifier } => {
                match Field::lookup(signal, identifier) {
                    Some(f) => Expr::Field(f),
                    None => Expr::Attr(identifier.as_str().into()),
                }
            }
            Operator::Not => Expr::Not(Box::new(Expr::compile(&kids[0], signal)?)),
            Operator::Neg => Expr::Neg(Box::new(Expr::compile(&kids[0], signal)?)),
            Operator::Add => bin(BinOp::Add)?,
            Operator::Sub => bin(BinOp::Sub)?,
            Operator::Mul => bin(BinOp::Mul)?,
            Operator::Div => bin(BinOp::Div)?,
            Operator::Mod => bin(BinOp::Mod)?,
            Operator::Exp => bin(BinOp::Pow)?,
            Operator::Eq => bin(BinOp::Eq)?,
            Operator::Neq => bin(BinOp::Neq)?,
            Operator::Gt => bin(BinOp::Gt)?,
            Operator::Lt => bin(BinOp::Lt)?,
            Operator::Geq => bin(BinOp::Geq)?,
            Operator::Leq => bin(BinOp::Leq)?,
            Operator::And => bin(BinOp::And)?,
            Operator::Or => bin(BinOp::Or)?,
            Operator::FunctionIdentifier { identifier } => {
                let args = call_args(node);
                let name = identifier.as_str();
                let want = |n: usize| {
                    if args.len() == n {
                        Ok(())
                    } else {
                        Err(ExprError::new(
                            format!("`{name}` takes {n} arguments, not {}", args.len()),
                            Some(name),
                        ))
                    }
                };
                let func = match name {
                    "contains" => Func::Contains,
                    "starts_with" => Func::StartsWith,
                    "ends_with" => Func::EndsWith,
                    "matches" => {
                        want(2)?;
                        let pattern = match args[1].operator() {
                            Operator::Const {
                                value: Value::String(s),
                            } => s,
                            _ => {
                                return Err(ExprError::new(
                                    "`matches` needs a string literal pattern",
                                    Some(name),
                                ))
                            }
                        };
                        let re = regex_lite::Regex::new(pattern).map_err(|e| {
                            ExprError::new(format!("bad regex in `matches`: {e}"), Some(name))
                        })?;
                        Func::Matches(re)
                    }
                    _ if AGGREGATES.contains(&name) => {
                        return Err(ExprError::new(
                            format!(
                            "aggregate `{name}` is only allowed at the top of a `compute` entry"
                        ),
                            Some(name),
                        ))
                    }
                    _ => return Err(unknown_function(name, WHERE_FUNCTIONS)),
                };
                want(2)?;
                let args = args
                    .iter()
                    .map(|a| Expr::compile(a, signal))
                    .collect::<Result<_, _>>()?;
                Expr::Call(func, args)
            }
            other => {
                return Err(ExprError::new(
                    format!("operator {other:?} is not allowed here"),
                    None,
                ))
            }
        })
    }

    /// Evaluates against one event. `None` means the value is missing: the
    /// event lacks a variable, or the types do not fit.
    #[inline]
    pub fn eval<'s>(&'s self, ev: &'s Event<'s>) -> Option<Val<'s>> {
        Some(match self {
            Expr::Num(n) => Val::Num(*n),
            Expr::Str(s) => Val::Str(s),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Field(f) => ev.field(*f)?,
            Expr::Attr(name) => ev.attribute(name)?,
            Expr::Not(e) => Val::Bool(!e.test(ev)),
            Expr::Neg(e) => match e.eval(ev)? {
                Val::Num(n) => Val::Num(-n),
                _ => return None,
            },
            Expr::Bin(op, a, b) => return eval_bin(*op, a, b, ev),
            Expr::Call(f, args) => {
                let (Some(Val::Str(s)), Some(Val::Str(arg))) = (args[0].eval(ev), args[1].eval(ev))
                else {
                    return Some(Val::Bool(false));
                };
                Val::Bool(match f {
                    Func::Contains => s.contains(arg),
                    Func::StartsWith => s.starts_with(arg),
                    Func::EndsWith => s.ends_with(arg),
                    Func::Matches(re) => re.is_match(s),
                })
            }
        })
    }

    /// A predicate: true only when it evaluates to `true`. A comparison with
    /// a missing variable is false, not an error.
    ///
    /// The same as `matches!(self.eval(ev), Some(Val::Bool(true)))`, with
    /// the boolean operators taken directly rather than through values.
    #[inline]
    pub fn test(&self, ev: &Event) -> bool {
        match self {
            Expr::Bool(b) => *b,
            Expr::Not(e) => !e.test(ev),
            Expr::Bin(BinOp::And, a, b) => a.test(ev) && b.test(ev),
            Expr::Bin(BinOp::Or, a, b) => a.test(ev) || b.test(ev),
            _ => matches!(self.eval(ev), Some(Val::Bool(true))),
        }
    }

    /// Splits a predicate into a [`Guard`] (a built-in string field equal to
    /// a literal, such as `name == "CPUUtilization"`) and the rest of the
    /// conjunction, if it has such a term at its top: `test` is then
    /// `guard.test(ev) && rest.map_or(true, |r| r.test(ev))`. Rules of one
    /// signal differ mostly by such a term, and checking it first is cheap.
    pub fn split_guard(&self) -> Option<(Guard, Option<Expr>)> {
        match self {
            Expr::Bin(BinOp::Eq, a, b) => match (&**a, &**b) {
                (Expr::Field(f), Expr::Str(s)) | (Expr::Str(s), Expr::Field(f)) => Some((
                    Guard {
                        field: *f,
                        value: s.clone(),
                    },
                    None,
                )),
                _ => None,
            },
            // `&&` has no side effects: its terms may be taken in any order.
            Expr::Bin(BinOp::And, a, b) => {
                let and = |rest: Option<Expr>, other: &Expr| {
                    Some(match rest {
                        None => other.clone(),
                        Some(r) => Expr::Bin(BinOp::And, Box::new(r), Box::new(other.clone())),
                    })
                };
                if let Some((g, rest)) = a.split_guard() {
                    Some((g, and(rest, b)))
                } else {
                    let (g, rest) = b.split_guard()?;
                    Some((g, and(rest, a)))
                }
            }
            _ => None,
        }
    }

    /// The number this evaluates to, if it is one.
    #[inline]
    pub fn number(&self, ev: &Event) -> Option<f64> {
        match self.eval(ev)? {
            Val::Num(n) => Some(n),
            _ => None,
        }
    }
}

/// `field == "literal"`, a term of a `where` (see [`Expr::split_guard`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Guard {
    pub field: Field,
    pub value: Box<str>,
}

impl Guard {
    /// The same as testing `field == "literal"` as an [`Expr`].
    #[inline]
    pub fn test(&self, ev: &Event) -> bool {
        matches!(ev.field(self.field), Some(Val::Str(s)) if s == &*self.value)
    }
}

#[inline]
fn eval_bin<'s>(op: BinOp, a: &'s Expr, b: &'s Expr, ev: &'s Event<'s>) -> Option<Val<'s>> {
    use BinOp::*;
    // Short-circuit: evaluating an expression has no side effects.
    match op {
        And => return Some(Val::Bool(a.test(ev) && b.test(ev))),
        Or => return Some(Val::Bool(a.test(ev) || b.test(ev))),
        _ => {}
    }
    let (x, y) = match (a.eval(ev), b.eval(ev)) {
        (Some(x), Some(y)) => (x, y),
        _ if matches!(op, Eq | Neq | Gt | Lt | Geq | Leq) => return Some(Val::Bool(false)),
        _ => return None,
    };
    Some(match (op, x, y) {
        (Add, Val::Num(x), Val::Num(y)) => Val::Num(x + y),
        (Sub, Val::Num(x), Val::Num(y)) => Val::Num(x - y),
        (Mul, Val::Num(x), Val::Num(y)) => Val::Num(x * y),
        (Div, Val::Num(x), Val::Num(y)) => Val::Num(x / y),
        (Mod, Val::Num(x), Val::Num(y)) => Val::Num(x % y),
        (Pow, Val::Num(x), Val::Num(y)) => Val::Num(x.powf(y)),
        (Eq, x, y) => Val::Bool(x == y),
        (Neq, x, y) => Val::Bool(x != y),
        (Gt | Lt | Geq | Leq, Val::Num(x), Val::Num(y)) => Val::Bool(cmp(op, x.partial_cmp(&y))),
        (Gt | Lt | Geq | Leq, Val::Str(x), Val::Str(y)) => Val::Bool(cmp(op, Some(x.cmp(y)))),
        (Gt | Lt | Geq | Leq, _, _) => Val::Bool(false),
        _ => return None,
    })
}

fn cmp(op: BinOp, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (op, o),
        (BinOp::Gt, Some(Greater))
            | (BinOp::Lt, Some(Less))
            | (BinOp::Geq, Some(Greater | Equal))
            | (BinOp::Leq, Some(Less | Equal))
    )
}

/// The arguments of a function call node: `f()`, `f(a)` or `f(a, b, …)`.
pub fn call_args(node: &Node) -> Vec<&Node> {
    let Some(root) = node.children().first() else {
        return vec![];
    };
    match root.children() {
        [] => vec![],
        [t] if matches!(t.operator(), Operator::Tuple) => t.children().iter().map(unroot).collect(),
        [one] => vec![unroot(one)],
        many => many.iter().map(unroot).collect(),
    }
}

/// Skips the `RootNode`s evalexpr wraps around parenthesised parts.
fn unroot(mut n: &Node) -> &Node {
    while let (Operator::RootNode, [one]) = (n.operator(), n.children()) {
        n = one;
    }
    n
}

/// "unknown function `avgg`; did you mean `avg`?"
pub fn unknown_function(name: &str, known: &[&str]) -> ExprError {
    let mut msg = format!("unknown function `{name}`");
    if let Some(s) = suggest(name, known.iter().copied()) {
        msg.push_str(&format!("; did you mean `{s}`?"));
    } else {
        msg.push_str(&format!("; known functions: {}", known.join(", ")));
    }
    ExprError::new(msg, Some(name))
}

/// The closest of `known` to `word`, when it is close enough to be a typo.
pub fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An aggregate found in a `compute` entry.
#[derive(Clone, Debug)]
pub struct AggCall {
    pub kind: AggKind,
    /// What it folds: a predicate for `count`/`ratio`, a number otherwise.
    pub arg: Option<Expr>,
}

/// A per-period expression: derived values and conditions. Parsed by
/// evalexpr; when it uses only numbers, names and operators (nearly every
/// rule) it also gets a compiled form over numbered slots, which runs without
/// building an evalexpr context. Functions and string labels use evalexpr.
#[derive(Clone, Debug)]
pub struct Formula {
    tree: Node,
    fast: Option<Fast>,
}

/// A compiled numeric formula. Slot `i < aggs` is aggregate `i`; the rest
/// are the compute names in order.
#[derive(Clone, Debug)]
pub enum Fast {
    Num(f64),
    Bool(bool),
    Slot(usize),
    Not(Box<Fast>),
    Neg(Box<Fast>),
    Bin(BinOp, Box<Fast>, Box<Fast>),
}

/// A formula's result on the fast path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FastVal {
    Num(f64),
    Bool(bool),
}

impl Fast {
    fn compile(node: &Node, slot: &dyn Fn(&str) -> Option<usize>) -> Option<Fast> {
        let kids = node.children();
        let bin = |op| {
            Some(Fast::Bin(
                op,
                Box::new(Fast::compile(&kids[0], slot)?),
                Box::new(Fast::compile(&kids[1], slot)?),
            ))
        };
        match node.operator() {
            Operator::RootNode if kids.len() == 1 => Fast::compile(&kids[0], slot),
            Operator::Const {
                value: Value::Float(f),
            } => Some(Fast::Num(*f)),
            Operator::Const {
                value: Value::Boolean(b),
            } => Some(Fast::Bool(*b)),
            Operator::VariableIdentifierRead { identifier } => slot(identifier).map(Fast::Slot),
            Operator::Not => Some(Fast::Not(Box::new(Fast::compile(&kids[0], slot)?))),
            Operator::Neg => Some(Fast::Neg(Box::new(Fast::compile(&kids[0], slot)?))),
            Operator::Add => bin(BinOp::Add),
            Operator::Sub => bin(BinOp::Sub),
            Operator::Mul => bin(BinOp::Mul),
            Operator::Div => bin(BinOp::Div),
            Operator::Mod => bin(BinOp::Mod),
            Operator::Exp => bin(BinOp::Pow),
            Operator::Eq => bin(BinOp::Eq),
            Operator::Neq => bin(BinOp::Neq),
            Operator::Gt => bin(BinOp::Gt),
            Operator::Lt => bin(BinOp::Lt),
            Operator::Geq => bin(BinOp::Geq),
            Operator::Leq => bin(BinOp::Leq),
            Operator::And => bin(BinOp::And),
            Operator::Or => bin(BinOp::Or),
            _ => None,
        }
    }

    /// Evaluates over `slots`; `None` when a slot it needs is empty or the
    /// types do not fit (where evalexpr would return an error).
    pub fn eval(&self, slots: &[Option<f64>]) -> Option<FastVal> {
        use BinOp::*;
        Some(match self {
            Fast::Num(n) => FastVal::Num(*n),
            Fast::Bool(b) => FastVal::Bool(*b),
            Fast::Slot(i) => FastVal::Num(slots[*i]?),
            Fast::Not(e) => match e.eval(slots)? {
                FastVal::Bool(b) => FastVal::Bool(!b),
                _ => return None,
            },
            Fast::Neg(e) => match e.eval(slots)? {
                FastVal::Num(n) => FastVal::Num(-n),
                _ => return None,
            },
            Fast::Bin(op, a, b) => match (op, a.eval(slots)?, b.eval(slots)?) {
                (And, FastVal::Bool(x), FastVal::Bool(y)) => FastVal::Bool(x && y),
                (Or, FastVal::Bool(x), FastVal::Bool(y)) => FastVal::Bool(x || y),
                (Eq, x, y) => FastVal::Bool(x == y),
                (Neq, x, y) => FastVal::Bool(x != y),
                (op, FastVal::Num(x), FastVal::Num(y)) => match op {
                    Add => FastVal::Num(x + y),
                    Sub => FastVal::Num(x - y),
                    Mul => FastVal::Num(x * y),
                    Div => FastVal::Num(x / y),
                    Mod => FastVal::Num(x % y),
                    Pow => FastVal::Num(x.powf(y)),
                    Gt | Lt | Geq | Leq => FastVal::Bool(cmp(*op, x.partial_cmp(&y))),
                    _ => return None,
                },
                _ => return None,
            },
        })
    }
}

/// The name under which the `i`th aggregate's value is passed to formulas.
pub fn agg_var(i: usize) -> String {
    format!("__agg{i}")
}

impl Formula {
    /// Compiles a `compute` entry: each aggregate call becomes a variable
    /// bound to its slot in `aggs`; other variables must be in `names`.
    pub fn compute(
        src: &str,
        signal: Signal,
        names: &[String],
        aggs: &mut Vec<AggCall>,
    ) -> Result<Formula, ExprError> {
        let mut tree = parse(src)?;
        lift_aggregates(&mut tree, signal, aggs)?;
        let slot = |v: &str| slot_of(v, names);
        let fast = Fast::compile(&tree, &slot);
        let f = Formula { tree, fast };
        f.check_names(names, &[], "compute")?;
        Ok(f)
    }

    /// Compiles a condition over computed `names` and string `labels`.
    pub fn condition(src: &str, names: &[String], labels: &[String]) -> Result<Formula, ExprError> {
        let tree = parse(src)?;
        let slot = |v: &str| slot_of(v, names);
        let fast = Fast::compile(&tree, &slot);
        let f = Formula { tree, fast };
        f.check_names(names, labels, "condition")?;
        // A dry run with stand-in values catches type errors now, not at 3 am.
        let mut ctx = HashMapContext::new();
        for n in names {
            let _ = ctx.set_value(n.clone(), Value::Float(1.0));
        }
        for l in labels {
            let _ = ctx.set_value(l.clone(), Value::String("x".into()));
        }
        match f.tree.eval_with_context(&ctx) {
            Ok(Value::Boolean(_)) => Ok(f),
            Ok(v) => Err(ExprError::new(
                format!(
                    "a condition must be true or false, but this gives {}",
                    type_name(&v)
                ),
                None,
            )),
            Err(e) => Err(ExprError::new(format!("{e}"), None)),
        }
    }

    fn check_names(
        &self,
        names: &[String],
        labels: &[String],
        what: &str,
    ) -> Result<(), ExprError> {
        for f in self.tree.iter_function_identifiers() {
            if !FORMULA_FUNCTIONS.contains(&f) {
                let mut known: Vec<&str> = FORMULA_FUNCTIONS.to_vec();
                if what == "compute" {
                    known.extend(AGGREGATES);
                }
                if AGGREGATES.contains(&f) {
                    return Err(ExprError::new(
                        format!("aggregate `{f}` belongs in `compute`; give it a name there and use the name"),
                        Some(f),
                    ));
                }
                return Err(unknown_function(f, &known));
            }
        }
        for v in self.tree.iter_read_variable_identifiers() {
            if v.starts_with("__agg")
                || names.iter().any(|n| n == v)
                || labels.iter().any(|l| l == v)
            {
                continue;
            }
            let mut msg = format!("undefined variable `{v}` in {what}");
            let known: Vec<&str> = names.iter().chain(labels).map(String::as_str).collect();
            if let Some(s) = suggest(v, known.iter().copied()) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            } else if known.is_empty() {
                msg.push_str("; nothing is computed before it");
            } else {
                msg.push_str(&format!("; defined here: {}", known.join(", ")));
            }
            return Err(ExprError::new(msg, Some(v)));
        }
        Ok(())
    }

    /// The compiled form, when the formula has one. Its slots are numbered
    /// by [`slot_of`]: aggregates first, then compute names.
    pub fn fast(&self) -> Option<&Fast> {
        self.fast.as_ref()
    }

    /// Evaluates with `ctx`; `None` when a value it needs is missing.
    pub fn eval(&self, ctx: &HashMapContext) -> Option<Value> {
        self.tree.eval_with_context(ctx).ok()
    }
}

/// Slot numbers of the fast path: `__aggN` is N; the `i`th compute name is
/// `MAX_AGGS + i`.
pub const MAX_AGGS: usize = 64;

fn slot_of(v: &str, names: &[String]) -> Option<usize> {
    if let Some(n) = v.strip_prefix("__agg") {
        return n.parse::<usize>().ok().filter(|n| *n < MAX_AGGS);
    }
    names.iter().position(|n| n == v).map(|i| MAX_AGGS + i)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Float(_) | Value::Int(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Tuple(_) => "a tuple",
        Value::Empty => "nothing",
    }
}

/// Replaces each aggregate call with a variable naming its slot.
fn lift_aggregates(
    node: &mut Node,
    signal: Signal,
    aggs: &mut Vec<AggCall>,
) -> Result<(), ExprError> {
    if let Operator::FunctionIdentifier { identifier } = node.operator() {
        let name = identifier.clone();
        if AGGREGATES.contains(&name.as_str()) {
            let args = call_args(node);
            let n = args.len();
            let arity = |want: usize, usage: &str| {
                if n == want {
                    Ok(())
                } else {
                    Err(ExprError::new(
                        format!("`{name}` takes {want} argument(s): {usage}"),
                        Some(&name),
                    ))
                }
            };
            let (kind, arg) = match name.as_str() {
                "count" if n == 0 => (AggKind::Count, None),
                "count" => {
                    arity(1, "count() or count(predicate)")?;
                    (AggKind::Count, Some(Expr::compile(args[0], signal)?))
                }
                "rate" => {
                    arity(0, "rate()")?;
                    (AggKind::Rate, None)
                }
                "ratio" => {
                    arity(1, "ratio(predicate)")?;
                    (AggKind::Ratio, Some(Expr::compile(args[0], signal)?))
                }
                "percentile" => {
                    arity(2, "percentile(x, q) with q from 0 to 100")?;
                    let q = match args[1].operator() {
                        Operator::Const {
                            value: Value::Float(q),
                        } => *q,
                        Operator::Const {
                            value: Value::Int(q),
                        } => *q as f64,
                        _ => {
                            return Err(ExprError::new(
                                "percentile's q must be a number literal",
                                Some(&name),
                            ))
                        }
                    };
                    if !(0.0..=100.0).contains(&q) {
                        return Err(ExprError::new(
                            format!("percentile q must be from 0 to 100, not {q}"),
                            Some(&name),
                        ));
                    }
                    (
                        AggKind::Percentile(q),
                        Some(Expr::compile(args[0], signal)?),
                    )
                }
                other => {
                    arity(1, &format!("{other}(x)"))?;
                    let kind = match other {
                        "sum" => AggKind::Sum,
                        "avg" => AggKind::Avg,
                        "min" => AggKind::Min,
                        _ => AggKind::Max,
                    };
                    (kind, Some(Expr::compile(args[0], signal)?))
                }
            };
            // `min(a, b)`/`max(a, b)` with two arguments stay evalexpr's built-ins.
            if !(matches!(name.as_str(), "min" | "max") && n == 2) {
                aggs.push(AggCall { kind, arg });
                *node.operator_mut() = Operator::VariableIdentifierRead {
                    identifier: agg_var(aggs.len() - 1),
                };
                node.children_mut().clear();
                return Ok(());
            }
        }
    }
    for c in node.children_mut() {
        lift_aggregates(c, signal, aggs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, JsonDecoder};

    fn where_(src: &str, signal: Signal) -> Expr {
        Expr::compile(&parse(src).unwrap(), signal).unwrap()
    }

    #[test]
    fn predicates_over_events() {
        let log = r#"{"kind":"log","time":0,"service":"api","level":"ERROR","message":"db timeout","fields":{"status_code":503,"query_time":1.5,"user":"u1"}}"#;
        let ev = JsonDecoder.decode(log.as_bytes()).unwrap();
        // (predicate, expected) — a missing variable makes its comparison false.
        let cases = [
            (r#"level == "ERROR""#, true),
            ("status_code >= 500", true),
            ("status_code == 503.0", true),
            ("query_time > 1", true),
            ("query_time > 1 && service == \"api\"", true),
            ("nope > 1", false),
            ("nope > 1 || status_code == 503", true),
            ("!(nope > 1)", true),
            (r#"contains(message, "timeout")"#, true),
            (r#"starts_with(message, "db")"#, true),
            (r#"ends_with(message, "db")"#, false),
            (r#"matches(message, "^db\\s+time")"#, true),
            (r#"contains(nope, "x")"#, false),
            ("status_code / 100 == 5.03", true),
            ("status_code == \"503\"", false),
            ("user > \"u0\"", true),
            ("1 == 1.0", true),
            ("kind == \"log\"", true),
        ];
        for (src, want) in cases {
            assert_eq!(where_(src, Signal::Log).test(&ev), want, "{src}");
        }
    }

    /// A guard and its rest decide exactly what the whole predicate does,
    /// and the direct `test` agrees with evaluating to `Some(Bool(true))`.
    #[test]
    fn split_guard_and_test_agree_with_eval() {
        let events = [
            r#"{"kind":"log","time":0,"service":"api","level":"ERROR","message":"m","fields":{"status_code":503}}"#,
            r#"{"kind":"log","time":0,"service":"web","level":"INFO","message":"m","fields":{"status_code":200}}"#,
            r#"{"kind":"log","time":0,"service":"api","level":"ERROR","message":"m"}"#,
        ];
        // (predicate, whether it has a guard)
        let cases = [
            (r#"level == "ERROR""#, true),
            (r#""ERROR" == level"#, true),
            (r#"level == "ERROR" && status_code >= 500"#, true),
            (r#"status_code >= 500 && level == "ERROR""#, true),
            (
                r#"status_code >= 500 && (service == "api" && level == "ERROR")"#,
                true,
            ),
            (
                r#"(level == "ERROR" && service == "api") && status_code > 1"#,
                true,
            ),
            (r#"kind == "log" && level == "INFO""#, true),
            (r#"level == "ERROR" || status_code >= 500"#, false),
            (r#"!(level == "ERROR")"#, false),
            (r#"status_code == "503""#, false),
            (r#"level != "ERROR""#, false),
            (r#"time == "0""#, true),
            (r#"!(status_code > 1) || nope"#, false),
        ];
        for src in events {
            let ev = JsonDecoder.decode(src.as_bytes()).unwrap();
            for (pred, guarded) in cases {
                let e = where_(pred, Signal::Log);
                let want = matches!(e.eval(&ev), Some(Val::Bool(true)));
                assert_eq!(e.test(&ev), want, "{pred} on {src}");
                match e.split_guard() {
                    Some((g, rest)) => {
                        assert!(guarded, "{pred} has no guard");
                        let got = g.test(&ev) && rest.as_ref().is_none_or(|r| r.test(&ev));
                        assert_eq!(got, want, "{pred} split as {g:?} and {rest:?}, on {src}");
                    }
                    None => assert!(!guarded, "{pred} has a guard"),
                }
            }
        }
    }

    #[test]
    fn where_rejects_unknown_functions_with_a_suggestion() {
        let err =
            Expr::compile(&parse(r#"contians(message, "x")"#).unwrap(), Signal::Log).unwrap_err();
        assert!(err.message.contains("did you mean `contains`"), "{err:?}");
        assert_eq!(err.token.as_deref(), Some("contians"));
        let err = Expr::compile(&parse("count() > 1").unwrap(), Signal::Log).unwrap_err();
        assert!(err.message.contains("only allowed"), "{err:?}");
    }

    #[test]
    fn compute_lifts_aggregates_into_slots() {
        let mut aggs = Vec::new();
        let names = vec![];
        Formula::compute(
            "count(status_code >= 500) / count() * 100",
            Signal::Log,
            &names,
            &mut aggs,
        )
        .unwrap();
        assert_eq!(aggs.len(), 2);
        assert_eq!(aggs[0].kind, AggKind::Count);
        assert!(aggs[0].arg.is_some() && aggs[1].arg.is_none());
        let err = Formula::compute("avgg(value)", Signal::Metric, &names, &mut aggs).unwrap_err();
        assert!(err.message.contains("did you mean `avg`"), "{err:?}");
        let err = Formula::compute("percentile(value, 101)", Signal::Metric, &names, &mut aggs)
            .unwrap_err();
        assert!(err.message.contains("0 to 100"), "{err:?}");
        let err = Formula::compute(
            "errors / total",
            Signal::Metric,
            &["errors".into()],
            &mut aggs,
        )
        .unwrap_err();
        assert!(
            err.message.contains("undefined variable `total`"),
            "{err:?}"
        );
    }

    #[test]
    fn numbers_are_floats_in_formulas() {
        let names = vec!["errors".to_string(), "total".to_string()];
        let mut ctx = HashMapContext::new();
        ctx.set_value("errors".into(), Value::Float(1.0)).unwrap();
        ctx.set_value("total".into(), Value::Float(3.0)).unwrap();
        let mut aggs = Vec::new();
        let ratio =
            Formula::compute("errors / total * 100", Signal::Log, &names, &mut aggs).unwrap();
        let Some(Value::Float(v)) = ratio.eval(&ctx) else {
            panic!("not a float")
        };
        assert!(
            (v - 33.333_333).abs() < 1e-4,
            "integer division would give 0: {v}"
        );
        let one = Formula::condition("1 == 1.0", &names, &[]).unwrap();
        assert_eq!(one.eval(&ctx), Some(Value::Boolean(true)));
        let int_div = Formula::condition("7 / 2 == 3.5", &names, &[]).unwrap();
        assert_eq!(int_div.eval(&ctx), Some(Value::Boolean(true)));
    }

    /// The compiled path must agree with evalexpr on every formula it takes.
    #[test]
    fn fast_path_agrees_with_evalexpr() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let srcs = [
            "a > 80",
            "a / b * 100",
            "a / b * 100 > 5 && b >= 20",
            "!(a < b) || c == 0",
            "-a + 2 ^ 3",
            "a % 3 == 1",
            "1 == 1.0",
            "a / c",
            "(a - b) * (a + b) <= c",
            "a != b && true",
        ];
        let envs: [[Option<f64>; 3]; 4] = [
            [Some(90.0), Some(30.0), Some(0.0)],
            [Some(1.0), Some(3.0), Some(2.0)],
            [Some(0.0), Some(0.0), Some(0.0)],
            [Some(5.0), None, Some(1.0)],
        ];
        for src in srcs {
            let f = Formula::condition(src, &names, &[]).or_else(|_| {
                let mut aggs = Vec::new();
                Formula::compute(src, Signal::Metric, &names, &mut aggs)
            });
            let f = f.unwrap_or_else(|e| panic!("{src}: {e:?}"));
            let fast = f.fast().unwrap_or_else(|| panic!("{src} has no fast form"));
            for env in &envs {
                let mut ctx = HashMapContext::new();
                let mut slots = vec![None; MAX_AGGS + 3];
                for (i, (n, v)) in names.iter().zip(env).enumerate() {
                    if let Some(v) = v {
                        ctx.set_value(n.clone(), Value::Float(*v)).unwrap();
                        slots[MAX_AGGS + i] = Some(*v);
                    }
                }
                let slow = f.eval(&ctx).map(|v| match v {
                    Value::Float(x) => FastVal::Num(x),
                    Value::Boolean(b) => FastVal::Bool(b),
                    other => panic!("{src}: unexpected {other:?}"),
                });
                let quick = fast.eval(&slots);
                let same = match (slow, quick) {
                    (Some(FastVal::Num(x)), Some(FastVal::Num(y))) => {
                        x == y || (x.is_nan() && y.is_nan())
                    }
                    (x, y) => x == y,
                };
                assert!(
                    same,
                    "{src} with {env:?}: evalexpr {slow:?}, fast {quick:?}"
                );
            }
        }
        // Functions and string labels stay with evalexpr.
        let f = Formula::condition("max(a, b) > 1", &names, &[]).unwrap();
        assert!(f.fast().is_none());
        let f = Formula::condition("a > 1 && host == \"x\"", &names, &["host".into()]).unwrap();
        assert!(f.fast().is_none());
    }

    #[test]
    fn conditions_are_checked_when_compiled() {
        let names = vec!["cpu".to_string()];
        assert!(Formula::condition("cpu > 80", &names, &[]).is_ok());
        let e = Formula::condition("cpuu > 80", &names, &[]).unwrap_err();
        assert!(e.message.contains("did you mean `cpu`"), "{e:?}");
        let e = Formula::condition("cpu + 80", &names, &[]).unwrap_err();
        assert!(e.message.contains("true or false"), "{e:?}");
        let e = Formula::condition("avg(cpu) > 80", &names, &[]).unwrap_err();
        assert!(e.message.contains("belongs in `compute`"), "{e:?}");
        assert!(Formula::condition(
            "cpu > 80 && InstanceId != \"i-1\"",
            &names,
            &["InstanceId".into()]
        )
        .is_ok());
    }
}
