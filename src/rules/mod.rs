//! Rules: expressions, the consecutive-period state machine, summary
//! templates, and rule unit tests (`klaxon test`).

pub mod expr;
pub mod reload;
pub mod state;
pub mod template;
pub mod unit;
