pub mod unit_placeholder {}
