//! Tools for plugin authors, behind `gatehouse plugin …`: run one plugin on
//! one request without a server, scaffold a plugin project, build one.

pub mod build;
pub mod new;
pub mod run;
