pub mod yaml;
pub mod spec;
