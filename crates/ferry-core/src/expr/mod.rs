//! CEL expressions, compiled once at load and evaluated per request. The language is
//! the one Google's workload identity federation and Kubernetes' structured
//! authentication use, so operators can port their rules.
//!
//! At compile time every free variable is checked against the variables the place of
//! the expression offers, so a typo (`assertin.sub`) fails `ferry check` with its path
//! instead of denying every request at run time.
//!
//! One [`Cel`] runtime is built per configuration: the standard environment (built once,
//! not per request), `matches()` backed by regexes compiled once — the literal patterns
//! of every expression at load, others on first use — and Google's `extract()`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value};

mod error;
mod fast;
mod net;
mod regexes;
mod scan;
mod shape;

pub use error::{ExprError, MAX_EXPRESSION_LEN};
pub use fast::Vars;
use regexes::Regexes;
pub use scan::ClaimUse;
use scan::{literal_regexes, walk};

/// The CEL runtime of one configuration.
#[derive(Clone)]
pub struct Cel {
    env: Arc<Env>,
    regexes: Arc<Regexes>,
    /// Expressions of the configuration compiled so far ([`Cel::compile_shared`]), by
    /// variables allowed and source: a configuration of thousands of providers written
    /// from one template compiles each expression once, and every provider shares it
    /// (memory, and caches that stay warm). Bounded by the configuration's size:
    /// expressions that arrive with requests never enter it.
    compiled: Arc<Mutex<HashMap<(String, String), Expr>>>,
}

impl std::fmt::Debug for Cel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cel")
            .field("regexes", &self.regexes)
            .finish()
    }
}

impl Default for Cel {
    fn default() -> Self {
        Self::new()
    }
}

/// Google's `extract(template)`: the text where `{name}` stands in `template`, e.g.
/// `'repo:acme/app:ref:x'.extract('repo:{repo}:')` is `acme/app`. No match gives "",
/// which a mapping then refuses like any empty value.
pub fn extract(input: &str, template: &str) -> String {
    let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
        return String::new();
    };
    if close < open {
        return String::new();
    }
    let (prefix, suffix) = (&template[..open], &template[close + 1..]);
    let Some(at) = input.find(prefix) else {
        return String::new();
    };
    let rest = &input[at + prefix.len()..];
    if suffix.is_empty() {
        return rest.to_owned();
    }
    rest.find(suffix)
        .map(|end| rest[..end].to_owned())
        .unwrap_or_default()
}

impl Cel {
    /// A runtime with the standard library, `matches` and `extract`.
    pub fn new() -> Self {
        let mut env = Env::stdlib();
        // The strings extension (split, lowerAscii, replace, …) declares only functions
        // Ferry does not redeclare; it cannot conflict with the standard library.
        let _ = env.add_extension(cel::extensions::strings);
        Self {
            env: Arc::new(env),
            regexes: Arc::default(),
            compiled: Arc::default(),
        }
    }

    /// Compiles `source`, allowing only the free variables in `allowed`. Literal regex
    /// patterns are compiled now, so an invalid one fails the configuration.
    pub fn compile(&self, source: &str, allowed: &[&str]) -> Result<Expr, ExprError> {
        let mut e = Expr::compile_with(&self.env, source, allowed)?;
        for pattern in &e.regexes {
            self.regexes.get(pattern)?;
        }
        let mut literals = Vec::new();
        net::literal_args(e.program.expression(), &mut literals);
        if let Some((function, literal)) = literals.iter().find(|(f, l)| !net::literal_ok(f, l)) {
            return Err(ExprError::InvalidLiteral {
                function,
                literal: literal.clone(),
            });
        }
        e.fast = fast::compile(e.program.expression(), &self.regexes).map(Arc::new);
        e.fast_str = fast::compile_str(e.program.expression(), &self.regexes).map(Arc::new);
        Ok(e)
    }

    /// [`Cel::compile`] for an expression of the configuration: an identical one
    /// compiled before by this runtime is shared rather than compiled again. Not for
    /// expressions that arrive with requests (downscoping conditions): the map of
    /// shared expressions would grow with them.
    pub fn compile_shared(&self, source: &str, allowed: &[&str]) -> Result<Expr, ExprError> {
        let key = (allowed.join(","), source.to_owned());
        if let Some(e) = self.cache().get(&key) {
            return Ok(e.clone());
        }
        let e = self.compile(source, allowed)?;
        self.cache().insert(key, e.clone());
        Ok(e)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Expr>> {
        // The map is only ever inserted into whole: a panic elsewhere cannot leave it
        // inconsistent.
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh evaluation context: the shared environment plus Ferry's functions.
    pub fn context(&self) -> Context<'static, 'static> {
        let mut ctx = Context::with_env(self.env.clone());
        let regexes = self.regexes.clone();
        // Neither name is declared by the environment (cel's own `matches` is compiled
        // out: it recompiles its regex on every call), so registration cannot fail.
        let _ = ctx.add_function(
            "matches",
            move |This(this): This<Arc<String>>,
                  pattern: Arc<String>|
                  -> Result<bool, ExecutionError> {
                let re = regexes
                    .get(&pattern)
                    .map_err(|e| ExecutionError::function_error("matches", e))?;
                Ok(re.is_match(&this))
            },
        );
        let _ = ctx.add_function(
            "extract",
            |This(this): This<Arc<String>>, template: Arc<String>| -> String {
                extract(&this, &template)
            },
        );
        net::register(&mut ctx);
        ctx
    }
}

/// A compiled expression with its source, for explain output and audit events.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<Program>,
    claims: ClaimUse,
    vars: BTreeSet<String>,
    regexes: Vec<String>,
    /// The fast path, when the whole expression has one (see `fast`).
    fast: Option<Arc<fast::Fast>>,
    /// The fast path of a string expression.
    fast_str: Option<Arc<fast::FastStr>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles `source` for a default runtime; see [`Cel::compile`].
    pub fn compile(source: &str, allowed: &[&str]) -> Result<Self, ExprError> {
        Cel::new().compile(source, allowed)
    }

    fn compile_with(env: &Env, source: &str, allowed: &[&str]) -> Result<Self, ExprError> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(ExprError::TooLong);
        }
        let program = env.compile(source).map_err(|e| {
            let msg = e.to_string();
            ExprError::Syntax(msg.lines().next().unwrap_or("syntax error").to_owned())
        })?;
        let mut free = BTreeSet::new();
        let mut claims = ClaimUse::None;
        walk(
            program.expression(),
            &mut Vec::new(),
            &mut free,
            &mut claims,
        );
        let mut regexes = Vec::new();
        literal_regexes(program.expression(), &mut regexes);
        if let Some(unknown) = free.iter().find(|v| !allowed.contains(&v.as_str())) {
            return Err(ExprError::UnknownVariable {
                name: unknown.clone(),
                available: allowed.join(", "),
            });
        }
        Ok(Self {
            source: source.into(),
            program: Arc::new(program),
            claims,
            vars: free,
            regexes,
            fast: None,
            fast_str: None,
        })
    }

    /// Whether the expression reads variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.vars.contains(name)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's value by the fast path alone, over `vars`: `None` when the
    /// expression has none or it cannot be sure of CEL's answer (then evaluate it with
    /// [`Expr::eval_bool`] on a context holding the same variables).
    pub fn eval_bool_fast<V: Vars + ?Sized>(&self, vars: &V) -> Option<bool> {
        self.fast.as_ref().and_then(|f| f.eval(vars))
    }

    /// [`Expr::eval_bool_fast`] for a string expression: `None` where
    /// [`Expr::eval_string`] on a context holding the same variables must answer.
    pub fn eval_string_fast<V: Vars + ?Sized>(&self, vars: &V) -> Option<String> {
        self.fast_str.as_ref().and_then(|f| f.eval(vars))
    }

    /// Whether [`Expr::eval_bool`] has a fast path for this expression.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// The claims of `assertion` this expression reads.
    pub fn claims(&self) -> &ClaimUse {
        &self.claims
    }

    /// Evaluates the expression.
    pub fn eval(&self, ctx: &Context<'_, '_>) -> Result<Value, ExprError> {
        Ok(self.program.execute(ctx)?)
    }

    /// Evaluates to a boolean; any other type is an error.
    pub fn eval_bool(&self, ctx: &Context<'_, '_>) -> Result<bool, ExprError> {
        if let Some(b) = self.eval_bool_fast(ctx) {
            return Ok(b);
        }
        match self.eval(ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(wrong_type("a bool", &other)),
        }
    }

    /// Evaluates to a string; any other type (or an empty string) is an error, so a
    /// missing claim never silently becomes "".
    pub fn eval_string(&self, ctx: &Context<'_, '_>) -> Result<String, ExprError> {
        if let Some(s) = self.eval_string_fast(ctx) {
            return Ok(s);
        }
        match self.eval(ctx)? {
            Value::String(s) if !s.is_empty() => Ok(s.to_string()),
            Value::String(_) => Err(ExprError::EmptyString),
            other => Err(wrong_type("a string", &other)),
        }
    }

    /// Evaluates to a list of strings.
    pub fn eval_string_list(&self, ctx: &Context<'_, '_>) -> Result<Vec<String>, ExprError> {
        match self.eval(ctx)? {
            Value::List(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.to_string()),
                    other => Err(ExprError::NotAStringList(other.type_of().to_string())),
                })
                .collect(),
            other => Err(wrong_type("a list", &other)),
        }
    }
}

fn wrong_type(expected: &'static str, got: &Value) -> ExprError {
    ExprError::WrongType {
        expected,
        got: got.type_of().to_string(),
    }
}

/// Converts a JSON value into a CEL value. Integers stay integers; other numbers are
/// doubles.
pub fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(obj) => {
            let map: HashMap<Key, Value> = obj
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Builds the `assertion` map from only the claims `uses` names.
pub fn claims_to_cel(
    claims: &serde_json::Map<String, serde_json::Value>,
    uses: &ClaimUse,
) -> Value {
    let map: HashMap<Key, Value> = match uses {
        ClaimUse::None => HashMap::new(),
        ClaimUse::All => claims
            .iter()
            .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
            .collect(),
        ClaimUse::Some(names) => names
            .iter()
            .filter_map(|k| {
                claims
                    .get(k)
                    .map(|v| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
            })
            .collect(),
    };
    Value::Map(Map { map: Arc::new(map) })
}

/// A string-keyed CEL map.
pub fn string_map(entries: &BTreeMap<String, String>) -> Value {
    let map: HashMap<Key, Value> = entries
        .iter()
        .map(|(k, v)| {
            (
                Key::String(Arc::new(k.clone())),
                Value::String(Arc::new(v.clone())),
            )
        })
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// A CEL list of strings.
pub fn string_list(items: &[String]) -> Value {
    Value::List(Arc::new(
        items
            .iter()
            .map(|s| Value::String(Arc::new(s.clone())))
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
