pub mod jsonpath;
pub mod record;
pub mod workflow;
pub mod store;
pub mod script;
pub mod expr;
