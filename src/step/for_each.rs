//! The `for_each` step (SPEC §6.1): its steps run once per item of the
//! array a template gives (`$.item`, `$.index`), up to `concurrency` items
//! at once. Which items there are is decided here ([`ForEach::items`]);
//! the executor runs them, records each one, and makes the loop's output.

use super::Step;
use crate::expr::template::ValueTemplate;
use serde_json::Value;

/// Items a loop takes when `max_items` is not given.
pub const DEFAULT_MAX_ITEMS: usize = 1000;
/// The most items one loop runs at once (each holds a copy of the run
/// context while it runs).
pub const MAX_CONCURRENCY: usize = 100;

#[derive(Debug, Clone)]
pub struct ForEach {
    pub items: ValueTemplate,
    /// Items run at once; 1 runs them in order.
    pub concurrency: usize,
    /// More items than this fail the step.
    pub max_items: usize,
    pub steps: Vec<Step>,
}

impl ForEach {
    /// The items for this run context: an array's elements, `null` none,
    /// any other value one item. More than `max_items` is an error.
    pub fn items(&self, ctx: &Value) -> Result<Vec<Value>, String> {
        let items = match self.items.render(ctx) {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            one => vec![one],
        };
        if items.len() > self.max_items {
            return Err(format!(
                "{} items, more than max_items ({}); raise `max_items` or split the list",
                items.len(),
                self.max_items
            ));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn each(path: &str, max_items: usize) -> ForEach {
        let mut secrets = Vec::new();
        let mut env = crate::expr::template::TemplateEnv {
            env: &|_: &str| None,
            secrets: &mut secrets,
        };
        let t = crate::expr::template::Template::compile(path, &mut env).expect("template");
        ForEach {
            items: ValueTemplate::Str(t),
            concurrency: 1,
            max_items,
            steps: Vec::new(),
        }
    }

    #[test]
    fn arrays_scalars_null_and_the_limit() {
        let e = each("{{ $.event.x }}", 2);
        let ctx = |x: Value| json!({ "event": { "x": x } });
        assert_eq!(e.items(&ctx(json!([1, 2]))), Ok(vec![json!(1), json!(2)]));
        assert_eq!(e.items(&ctx(json!("one"))), Ok(vec![json!("one")]));
        assert_eq!(e.items(&ctx(Value::Null)), Ok(Vec::new()));
        assert_eq!(e.items(&json!({"event": {}})), Ok(Vec::new()));
        let err = e.items(&ctx(json!([1, 2, 3]))).expect_err("too many");
        assert!(
            err.contains("3 items") && err.contains("max_items (2)"),
            "{err}"
        );
    }
}
