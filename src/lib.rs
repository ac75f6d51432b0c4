//! stable-diffusion-webui launcher: runs AUTOMATIC1111's webui from a read-only tree with an
//! embedded CPython, fronted by its own reverse proxy.
//!
//! `main.rs` only wires these modules together; each owns one concern.

pub mod atomic_file;
pub mod browser;
pub mod cli;
pub mod commands;
pub mod control;
pub mod data;
pub mod dirs;
pub mod embed;
pub mod env_vars;
pub mod environment;
pub mod extensions;
pub mod layout;
pub mod models;
pub mod network;
pub mod progress;
pub mod proxy;
pub mod python_env;
pub mod restart;
pub mod settings;
pub mod shim;
pub mod sources;
pub mod subpath;
pub mod views;
