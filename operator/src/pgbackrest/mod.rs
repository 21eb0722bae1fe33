//! pgBackRest, as relevo drives it: configuration files, command lines and the parsed output
//! of `info`. All pure: the controllers put the text into ConfigMaps, the argv into Jobs, and
//! feed the JSON a Job printed back into [`info`].

pub mod command;
pub mod config;
pub mod info;
