//! The `filter` query parameter of list calls, the subset a tool needs:
//!
//! - legacy syntax: `FIELD eq REGEX`, `FIELD ne REGEX` (RE2-style full match), alone or several
//!   each in parentheses, all of which must match (`(family eq "…")(architecture eq X86_64)`,
//!   what gcloud sends for `--filter="family:x architecture:y"`);
//! - current syntax: terms `FIELD = VALUE`, `FIELD != VALUE`, `FIELD ~ REGEX`, `FIELD !~ REGEX`,
//!   `FIELD : VALUE` (has: substring, or `*` for "present"), optionally in parentheses, joined by
//!   whitespace or `AND`. Values may be quoted with `"` or `'`.
//!
//! `FIELD` is a dotted path (`name`, `status`, `labels.role`, `networkInterfaces.networkIP`); an
//! array on the way matches when any element does. Anything else (`OR`, `NOT`) is a 400.

use regex_automata::dfa::regex::Regex;
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use serde_json::Value;

use super::error::ApiError;

/// A parsed filter: all terms must match.
#[derive(Debug)]
pub struct Filter {
    terms: Vec<Term>,
}

#[derive(Debug)]
struct Term {
    path: Vec<String>,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Equals(String),
    NotEquals(String),
    Matches(Box<Regex>),
    NotMatches(Box<Regex>),
    Has(String),
}

fn bad(filter: &str, why: &str) -> ApiError {
    ApiError::invalid(format!("Invalid value for field 'filter': '{filter}'. {why}"))
}

fn full_match(filter: &str, pattern: &str) -> Result<Box<Regex>, ApiError> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false))
        .build(&format!("^(?:{pattern})$"))
        .map(Box::new)
        .map_err(|e| bad(filter, &format!("Invalid regular expression: {e}")))
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

fn path(field: &str) -> Vec<String> {
    field.split('.').map(str::to_string).collect()
}

/// `FIELD eq|ne VALUE` as one legacy term; `None` when `expr` is not of that form.
fn legacy_term(filter: &str, expr: &str) -> Option<Result<Term, ApiError>> {
    let mut words = expr.trim().splitn(3, char::is_whitespace);
    let (Some(field), Some(op @ ("eq" | "ne")), Some(value)) = (words.next(), words.next(), words.next()) else {
        return None;
    };
    if !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return None; // `(family eq …)(…)`: several expressions
    }
    Some(full_match(filter, unquote(value)).map(|re| Term {
        path: path(field),
        op: if op == "eq" {
            Op::Matches(re)
        } else {
            Op::NotMatches(re)
        },
    }))
}

/// The insides of `(…)(…) (…)`, parentheses inside quotes or nested (regex groups) kept; `None`
/// when the filter is not a sequence of parenthesized groups.
fn legacy_groups(filter: &str) -> Option<Vec<&str>> {
    let mut groups = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in filter.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if depth > 0 => quote = Some(c),
            (None, '(') => {
                if depth == 0 {
                    start = i + 1;
                }
                depth += 1;
            }
            (None, ')') if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    groups.push(&filter[start..i]);
                }
            }
            (None, c) if depth == 0 && !c.is_whitespace() => return None,
            _ => {}
        }
    }
    (depth == 0 && quote.is_none() && !groups.is_empty()).then_some(groups)
}

#[derive(Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Op(&'static str),
    Word(String),
}

fn tokenize(filter: &str) -> Result<Vec<Token>, ApiError> {
    let mut tokens = Vec::new();
    let mut chars = filter.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' | '\'' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some(x) if x == c => break,
                        Some(x) => word.push(x),
                        None => return Err(bad(filter, "Unterminated quote.")),
                    }
                }
                tokens.push(Token::Word(word));
            }
            '!' => {
                chars.next();
                match chars.next() {
                    Some('=') => tokens.push(Token::Op("!=")),
                    Some('~') => tokens.push(Token::Op("!~")),
                    _ => return Err(bad(filter, "Expected != or !~.")),
                }
            }
            '=' | ':' | '~' => {
                chars.next();
                tokens.push(Token::Op(match c {
                    '=' => "=",
                    ':' => ":",
                    _ => "~",
                }));
            }
            _ => {
                let mut word = String::new();
                while let Some(&x) = chars.peek() {
                    if x.is_whitespace() || "()!=:~\"'".contains(x) {
                        break;
                    }
                    word.push(x);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

impl Filter {
    /// Parse a filter; an empty one matches everything.
    pub fn parse(filter: &str) -> Result<Filter, ApiError> {
        let trimmed = filter.trim();
        // legacy: FIELD eq|ne VALUE, the value being the rest of the expression
        if let Some(term) = legacy_term(filter, trimmed) {
            return Ok(Filter { terms: vec![term?] });
        }
        // legacy, several expressions each in parentheses (gcloud sends
        // `(family eq ".*\bcos\-121\-lts\b.*")(architecture eq X86_64)`)
        if let Some(groups) = legacy_groups(trimmed) {
            let terms: Option<Vec<_>> = groups.iter().map(|g| legacy_term(filter, g)).collect();
            if let Some(terms) = terms {
                return Ok(Filter {
                    terms: terms.into_iter().collect::<Result<_, _>>()?,
                });
            }
        }
        let tokens = tokenize(trimmed)?;
        let mut terms = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let mut depth = 0;
            while tokens.get(i) == Some(&Token::Open) {
                depth += 1;
                i += 1;
            }
            let (Some(Token::Word(field)), Some(Token::Op(op)), Some(Token::Word(value))) =
                (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
            else {
                return Err(bad(filter, "Expected FIELD OPERATOR VALUE terms."));
            };
            if field == "OR" || field == "NOT" {
                return Err(bad(filter, "OR and NOT are not supported by the emulator."));
            }
            i += 3;
            for _ in 0..depth {
                if tokens.get(i) != Some(&Token::Close) {
                    return Err(bad(filter, "Unbalanced parentheses."));
                }
                i += 1;
            }
            let op = match *op {
                "=" => Op::Equals(value.clone()),
                "!=" => Op::NotEquals(value.clone()),
                "~" => Op::Matches(full_match(filter, value)?),
                "!~" => Op::NotMatches(full_match(filter, value)?),
                _ => Op::Has(value.clone()),
            };
            terms.push(Term { path: path(field), op });
            match tokens.get(i) {
                Some(Token::Word(w)) if w == "AND" => i += 1,
                Some(Token::Word(w)) if w == "OR" => {
                    return Err(bad(filter, "OR is not supported by the emulator."));
                }
                _ => {}
            }
        }
        Ok(Filter { terms })
    }

    /// Whether a resource passes.
    pub fn matches(&self, resource: &Value) -> bool {
        self.terms.iter().all(|t| {
            let mut leaves = Vec::new();
            collect(resource, &t.path, &mut leaves);
            match &t.op {
                Op::Equals(v) => leaves.iter().any(|l| l == v),
                Op::NotEquals(v) => !leaves.iter().any(|l| l == v),
                Op::Matches(re) => leaves.iter().any(|l| re.is_match(l.as_bytes())),
                Op::NotMatches(re) => !leaves.iter().any(|l| re.is_match(l.as_bytes())),
                Op::Has(v) if v == "*" => !leaves.is_empty(),
                Op::Has(v) => leaves.iter().any(|l| l.contains(v.as_str())),
            }
        })
    }
}

/// The scalar values at `path` (through arrays), as strings.
fn collect(v: &Value, path: &[String], out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        _ => match path.split_first() {
            Some((head, rest)) => {
                if let Some(next) = v.get(head) {
                    collect(next, rest, out);
                }
            }
            None => match v {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                Value::Bool(b) => out.push(b.to_string()),
                Value::Object(_) => out.push(String::new()),
                _ => {}
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, v: &Value) -> bool {
        Filter::parse(filter).expect("parses").matches(v)
    }

    #[test]
    fn legacy_regex_filters_are_anchored() {
        let a = json!({"name": "kubernetes-master-x1z"});
        let b = json!({"name": "kubernetes-master-x1z-old"});
        let re = "name eq kubernetes-master(-[a-z0-9]{3})?";
        assert!(m(re, &a));
        assert!(!m(re, &b));
        assert!(m("name ne 'kubernetes-minion.*'", &a));
        assert!(m("name eq (kubernetes|other)-master.*", &a));
    }

    #[test]
    fn legacy_expressions_in_parentheses_all_apply() {
        let cos = json!({"name": "cos-121-17412-1-21", "family": "cos-121-lts", "architecture": "X86_64"});
        let gcloud = r#"(family eq ".*\bcos\-121\-lts\b.*")(architecture eq X86_64)"#;
        assert!(m(gcloud, &cos));
        assert!(!m(
            r#"(family eq ".*\bcos\-109\-lts\b.*")(architecture eq X86_64)"#,
            &cos
        ));
        assert!(m("(name eq cos-121(-[0-9]+)+) (architecture ne ARM64)", &cos));
        assert!(!m("(name eq cos-121(-[0-9]+)+) (architecture ne X86_64)", &cos));
        // current syntax in parentheses is still current syntax
        assert!(m("(family = cos-121-lts) (architecture = X86_64)", &cos));
    }

    #[test]
    fn current_syntax_terms_and_paths() {
        let v = json!({"name": "m", "status": "RUNNING", "labels": {"role": "master"},
            "networkInterfaces": [{"networkIP": "127.1.1.1"}], "sizeGb": "10"});
        assert!(m("status = RUNNING", &v));
        assert!(m("(status = \"RUNNING\") (labels.role = master)", &v));
        assert!(m("status=RUNNING AND name != x", &v));
        assert!(m("networkInterfaces.networkIP = 127.1.1.1", &v));
        assert!(m("labels.role:*", &v));
        assert!(!m("labels.zone:*", &v));
        assert!(m("name ~ m.*", &v));
        assert!(!m("name !~ m", &v));
        assert!(m("", &v));
        assert!(Filter::parse("a = b OR c = d").is_err());
        assert!(Filter::parse("a = ").is_err());
        assert!(Filter::parse("name eq (").is_err());
    }
}
