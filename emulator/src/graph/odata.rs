//! The subset of OData that Graph clients use on the emulated resources: `$filter` (`eq`, `ne`,
//! `and`, `or`, parentheses and `any(...)` over collections), `$expand`, `$select`, `$top` and
//! paging with `$skiptoken`.
//!
//! Filters are evaluated on the JSON of an entity with all its navigation properties expanded,
//! so one evaluator serves every resource; each resource lists the filter paths it supports and
//! anything else is a 400 that names them.

use super::error::GraphError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// What a collection route accepts.
pub struct EntitySet {
    /// The Graph type name, for error messages (`microsoft.graph.user`).
    pub type_name: &'static str,
    /// Filterable paths: `teamsApp/id`, or `installedApps/any(teamsApp/id)` for a lambda.
    pub filters: &'static [&'static str],
    /// Navigation properties that `$expand` can add; without `$expand` they are left out.
    pub navigation: &'static [&'static str],
    pub page_size: usize,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueryOptions {
    pub filter: Option<Expr>,
    pub filter_text: Option<String>,
    pub select: Option<Vec<String>>,
    pub expand: Vec<String>,
    pub top: Option<usize>,
    pub skip: usize,
}

const MAX_FILTER_LEN: usize = 2048;
const MAX_DEPTH: usize = 16;

impl QueryOptions {
    /// Reads the `$` options of a raw query string. Options a route does not use are checked by
    /// [`QueryOptions::check`].
    pub fn parse(raw: Option<&str>) -> Result<Self, GraphError> {
        let mut q = QueryOptions::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let key = key.trim();
            let name = key.strip_prefix('$').unwrap_or(key).to_ascii_lowercase();
            if !key.starts_with('$')
                && !matches!(
                    name.as_str(),
                    "filter" | "select" | "expand" | "top" | "skiptoken"
                )
            {
                continue; // non-OData parameters are ignored, as Graph does
            }
            match name.as_str() {
                "filter" => {
                    if value.len() > MAX_FILTER_LEN {
                        return Err(GraphError::bad_request(
                            "The $filter expression is too long.",
                        ));
                    }
                    q.filter = Some(parse_filter(&value)?);
                    q.filter_text = Some(value.into_owned());
                }
                "select" => q.select = Some(split_list(&value)),
                "expand" => q.expand = split_list(&value),
                "top" => {
                    let top: usize = value.trim().parse().map_err(|_| {
                        GraphError::bad_request(format!("Invalid value '{value}' for query option $top: a positive integer is expected."))
                    })?;
                    if top == 0 || top > 999 {
                        return Err(GraphError::bad_request(
                            "Invalid page size specified: $top must be between 1 and 999.",
                        ));
                    }
                    q.top = Some(top);
                }
                "skiptoken" => {
                    q.skip = URL_SAFE_NO_PAD
                        .decode(value.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.strip_prefix("skip:").and_then(|n| n.parse().ok()))
                        .ok_or_else(|| {
                            GraphError::bad_request(
                                "The $skiptoken is not valid. Use the @odata.nextLink as given.",
                            )
                        })?;
                }
                "count" | "orderby" | "search" | "skip" | "format" | "levels" | "apply"
                | "compute" => {
                    return Err(GraphError::bad_request(format!(
                        "Query option '${name}' is not supported by the emulator on this resource; supported: $filter, $select, $expand, $top."
                    )));
                }
                _ => {
                    return Err(GraphError::bad_request(format!(
                        "Query option '{key}' is not a valid OData query option."
                    )));
                }
            }
        }
        Ok(q)
    }

    /// Rejects filters and expansions the resource does not support, naming what it does.
    pub fn check(&self, set: &EntitySet) -> Result<(), GraphError> {
        if let Some(filter) = &self.filter {
            let mut used = Vec::new();
            filter.paths(&mut used);
            for path in used {
                if !set.filters.iter().any(|f| f.eq_ignore_ascii_case(&path)) {
                    let supported = if set.filters.is_empty() {
                        "none on this resource".to_string()
                    } else {
                        set.filters
                            .iter()
                            .map(|f| format!("'{f}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return Err(GraphError::bad_request(format!(
                        "Unsupported $filter on '{path}' for {}. The emulator supports filtering with eq, ne, and, or and any() on: {supported}.",
                        set.type_name
                    )));
                }
            }
        }
        for e in &self.expand {
            if !set.navigation.iter().any(|n| n.eq_ignore_ascii_case(e)) {
                return Err(GraphError::bad_request(format!(
                    "Could not find a navigation property named '{e}' on type '{}'. Expandable: {}.",
                    set.type_name,
                    if set.navigation.is_empty() {
                        "none".into()
                    } else {
                        set.navigation.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }

    /// Shapes one entity: drops navigation properties that were not expanded, applies `$select`.
    pub fn shape(&self, set: &EntitySet, mut entity: Value) -> Result<Value, GraphError> {
        if let Value::Object(map) = &mut entity {
            for nav in set.navigation {
                if !self.expand.iter().any(|e| e.eq_ignore_ascii_case(nav)) {
                    map.remove(*nav);
                }
            }
            if let Some(select) = &self.select {
                let mut picked = Map::new();
                for s in select {
                    let Some((k, v)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(s)) else {
                        return Err(GraphError::bad_request(format!(
                            "Could not find a property named '{s}' on type '{}'.",
                            set.type_name
                        )));
                    };
                    picked.insert(k.clone(), v.clone());
                }
                for (k, v) in map.iter() {
                    if k.starts_with("@odata")
                        || self.expand.iter().any(|e| e.eq_ignore_ascii_case(k))
                    {
                        picked.insert(k.clone(), v.clone());
                    }
                }
                *map = picked;
            }
        }
        Ok(entity)
    }

    /// Filters, pages and shapes a collection. Returns the page and the `$skiptoken` of the next.
    pub fn page(
        &self,
        set: &EntitySet,
        items: Vec<Value>,
    ) -> Result<(Vec<Value>, Option<String>), GraphError> {
        self.page_of(set, &items, Value::clone)
    }

    /// [`QueryOptions::page`] over any entities: only a filter needs every entity's JSON, so
    /// without one only the page is rendered (paging a 100,000-user tenant stays linear).
    pub fn page_of<T>(
        &self,
        set: &EntitySet,
        items: &[T],
        to_json: impl Fn(&T) -> Value,
    ) -> Result<(Vec<Value>, Option<String>), GraphError> {
        self.check(set)?;
        let size = self.top.unwrap_or(set.page_size).max(1);
        let (rendered, total): (Vec<Value>, usize) = match &self.filter {
            Some(f) => {
                let matching: Vec<Value> = items
                    .iter()
                    .map(&to_json)
                    .filter(|v| f.matches(v))
                    .collect();
                let total = matching.len();
                let end = self.skip.saturating_add(size).min(total);
                (
                    matching
                        .into_iter()
                        .take(end)
                        .skip(self.skip.min(end))
                        .collect(),
                    total,
                )
            }
            None => {
                let end = self.skip.saturating_add(size).min(items.len());
                (
                    items[self.skip.min(end)..end]
                        .iter()
                        .map(&to_json)
                        .collect(),
                    items.len(),
                )
            }
        };
        let end = self.skip.saturating_add(size).min(total);
        let next = (end < total).then(|| URL_SAFE_NO_PAD.encode(format!("skip:{end}")));
        let page = rendered
            .into_iter()
            .map(|e| self.shape(set, e))
            .collect::<Result<_, _>>()?;
        Ok((page, next))
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Compare {
        path: Vec<String>,
        negate: bool,
        value: Literal,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Any {
        collection: Vec<String>,
        var: String,
        body: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    Number(f64),
}

impl Expr {
    /// The paths a filter uses, in the form [`EntitySet::filters`] lists them.
    fn paths(&self, out: &mut Vec<String>) {
        match self {
            Expr::Compare { path, .. } => out.push(path.join("/")),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.paths(out);
                b.paths(out);
            }
            Expr::Any {
                collection,
                var,
                body,
            } => {
                let mut inner = Vec::new();
                body.paths(&mut inner);
                for p in inner {
                    let rel = p.strip_prefix(&format!("{var}/")).unwrap_or(&p);
                    out.push(format!("{}/any({rel})", collection.join("/")));
                }
            }
        }
    }

    pub fn matches(&self, entity: &Value) -> bool {
        self.eval(entity, None)
    }

    fn eval(&self, entity: &Value, scope: Option<(&str, &Value)>) -> bool {
        match self {
            Expr::And(a, b) => a.eval(entity, scope) && b.eval(entity, scope),
            Expr::Or(a, b) => a.eval(entity, scope) || b.eval(entity, scope),
            Expr::Compare {
                path,
                negate,
                value,
            } => {
                let found = resolve(entity, path, scope);
                let equal = found.is_some_and(|v| literal_equals(v, value))
                    || (found.is_none() && *value == Literal::Null);
                equal != *negate
            }
            Expr::Any {
                collection,
                var,
                body,
            } => match resolve(entity, collection, scope) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|item| body.eval(entity, Some((var, item)))),
                _ => false,
            },
        }
    }
}

fn resolve<'a>(
    entity: &'a Value,
    path: &[String],
    scope: Option<(&str, &'a Value)>,
) -> Option<&'a Value> {
    let (mut current, rest) = match (scope, path.first()) {
        (Some((var, value)), Some(first)) if first == var => (value, &path[1..]),
        _ => (entity, path),
    };
    for segment in rest {
        let map = current.as_object()?;
        current = map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(segment))
            .map(|(_, v)| v)?;
    }
    Some(current)
}

fn literal_equals(value: &Value, literal: &Literal) -> bool {
    match (value, literal) {
        (Value::String(s), Literal::Str(l)) => s.eq_ignore_ascii_case(l),
        (Value::Bool(b), Literal::Bool(l)) => b == l,
        (Value::Null, Literal::Null) => true,
        (Value::Number(n), Literal::Number(l)) => n.as_f64().is_some_and(|n| n == *l),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(f64),
    Open,
    Close,
    Slash,
    Colon,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, GraphError> {
    let bad = |why: String| GraphError::bad_request(format!("Invalid $filter: {why}"));
    let mut tokens = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1
            }
            '/' => {
                tokens.push(Token::Slash);
                i += 1
            }
            ':' => {
                tokens.push(Token::Colon);
                i += 1
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(bad("a string literal is not closed".into())),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | '.'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => tokens.push(Token::Number(n)),
                    // a bare GUID, as OData allows for Edm.Guid properties
                    _ if uuid::Uuid::parse_str(&text).is_ok() => tokens.push(Token::Str(text)),
                    _ => return Err(bad(format!("'{text}' is not a number"))),
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '@' || c == '.' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '.' | '$'))
                {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(bad(format!("unexpected character '{other}'"))),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

pub fn parse_filter(input: &str) -> Result<Expr, GraphError> {
    let mut p = Parser {
        tokens: tokenize(input)?,
        pos: 0,
        depth: 0,
    };
    if p.tokens.is_empty() {
        return Err(GraphError::bad_request(
            "Invalid $filter: the expression is empty.",
        ));
    }
    let expr = p.or_expr()?;
    if p.pos != p.tokens.len() {
        return Err(p.error("unexpected text after the end of the expression"));
    }
    Ok(expr)
}

impl Parser {
    fn error(&self, why: &str) -> GraphError {
        GraphError::bad_request(format!(
            "Invalid $filter: {why} (at token {}). Supported: <path> eq|ne <literal>, and, or, parentheses, <collection>/any(x:x/<path> eq <literal>).",
            self.pos + 1
        ))
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w.eq_ignore_ascii_case(word))
    }

    fn enter(&mut self) -> Result<(), GraphError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("the expression is nested too deeply"));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, GraphError> {
        self.enter()?;
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, GraphError> {
        let mut left = self.atom()?;
        while self.keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Expr, GraphError> {
        if self.peek() == Some(&Token::Open) {
            self.pos += 1;
            let e = self.or_expr()?;
            if self.next() != Some(Token::Close) {
                return Err(self.error("a ')' is missing"));
            }
            return Ok(e);
        }
        let mut path = vec![self.ident()?];
        while self.peek() == Some(&Token::Slash) {
            self.pos += 1;
            let segment = self.ident()?;
            if segment.eq_ignore_ascii_case("any") && self.peek() == Some(&Token::Open) {
                return self.lambda(path);
            }
            if segment.eq_ignore_ascii_case("all") && self.peek() == Some(&Token::Open) {
                return Err(self.error("all() is not supported by the emulator; use any()"));
            }
            path.push(segment);
        }
        let op = self.ident()?.to_ascii_lowercase();
        let negate = match op.as_str() {
            "eq" => false,
            "ne" => true,
            other => {
                return Err(self.error(&format!(
                    "the operator '{other}' is not supported; use eq or ne"
                )));
            }
        };
        let value = match self.next() {
            Some(Token::Str(s)) => Literal::Str(s),
            Some(Token::Number(n)) => Literal::Number(n),
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            _ => {
                self.pos -= 1;
                return Err(
                    self.error("a literal ('text', a number, true, false or null) is expected")
                );
            }
        };
        Ok(Expr::Compare {
            path,
            negate,
            value,
        })
    }

    fn lambda(&mut self, collection: Vec<String>) -> Result<Expr, GraphError> {
        self.pos += 1; // '('
        let var = self.ident()?;
        if self.next() != Some(Token::Colon) {
            return Err(self.error("any() needs a range variable: any(a:a/…)"));
        }
        let body = self.or_expr()?;
        if self.next() != Some(Token::Close) {
            return Err(self.error("a ')' is missing after any("));
        }
        Ok(Expr::Any {
            collection,
            var,
            body: Box::new(body),
        })
    }

    fn ident(&mut self) -> Result<String, GraphError> {
        match self.next() {
            Some(Token::Ident(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(self.error("a property name is expected"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INSTALLS: EntitySet = EntitySet {
        type_name: "microsoft.graph.userScopeTeamsAppInstallation",
        filters: &["teamsApp/id", "teamsApp/externalId"],
        navigation: &["teamsApp", "teamsAppDefinition"],
        page_size: 2,
    };

    fn q(raw: &str) -> Result<QueryOptions, GraphError> {
        QueryOptions::parse(Some(raw))
    }

    #[test]
    fn eq_and_any_filters_match_as_graph_documents_them() {
        let app = json!({"id": "i1", "teamsApp": {"id": "AB-12", "externalId": "m1"}});
        let f = parse_filter("teamsApp/externalId eq 'm1' and teamsApp/id eq 'ab-12'").unwrap();
        assert!(f.matches(&app));
        let f = parse_filter("teamsApp/id ne 'AB-12'").unwrap();
        assert!(!f.matches(&app));
        let chat = json!({"id": "c", "installedApps": [{"teamsApp": {"id": "x"}}, {"teamsApp": {"id": "y"}}]});
        assert!(
            parse_filter("installedApps/any(a:a/teamsApp/id eq 'y')")
                .unwrap()
                .matches(&chat)
        );
        assert!(
            !parse_filter("installedApps/any(a:a/teamsApp/id eq 'z')")
                .unwrap()
                .matches(&chat)
        );
        assert!(
            parse_filter("(id eq 'q' or id eq 'c')")
                .unwrap()
                .matches(&chat)
        );
        assert!(parse_filter("id eq 'it''s'").is_ok());
    }

    #[test]
    fn unsupported_filters_say_what_is_supported() {
        let err = q("$filter=startswith(displayName,'A')").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("Supported:"), "{}", err.message);
        let err = q("$filter=teamsApp/displayName eq 'x'")
            .unwrap()
            .check(&INSTALLS)
            .unwrap_err();
        assert!(
            err.message.contains("'teamsApp/externalId'"),
            "{}",
            err.message
        );
        assert!(q("$filter=id gt 'x'").is_err());
        assert!(q("$filter=id eq").is_err());
        assert!(q("$filter=").is_err());
        assert!(q("$filter=((((").is_err());
        assert!(q("$expand=members").unwrap().check(&INSTALLS).is_err());
        assert!(q("$top=0").is_err());
        assert!(q("$skiptoken=garbage").is_err());
    }

    #[test]
    fn pages_follow_skiptokens_and_shape_entities() {
        let items: Vec<Value> = (0..5)
            .map(|i| json!({"id": i.to_string(), "teamsApp": {"id": "a"}}))
            .collect();
        let first = q("").unwrap();
        let (page, next) = first.page(&INSTALLS, items.clone()).unwrap();
        assert_eq!(page, vec![json!({"id": "0"}), json!({"id": "1"})]);
        let token = next.unwrap();
        let (page, next) = q(&format!("$skiptoken={token}&$expand=teamsApp"))
            .unwrap()
            .page(&INSTALLS, items.clone())
            .unwrap();
        assert_eq!(page[0], json!({"id": "2", "teamsApp": {"id": "a"}}));
        assert!(next.is_some());
        let (page, next) = q("$top=10&$select=id")
            .unwrap()
            .page(&INSTALLS, items)
            .unwrap();
        assert_eq!(page.len(), 5);
        assert!(next.is_none());
    }
}
