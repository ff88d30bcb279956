//! Expressions written in workflow files: `{{ … }}` templates and conditions.

pub mod condition;
pub mod template;
