//! What the operator and the in-pod programs (`relevo instance`, `relevo repo-host`) must
//! agree on, with no dependency on the rest of the crate:
//! - the marker protocol, by pod annotation and by the direct channel ([`markers`]);
//! - the file layout and roles inside a PostgreSQL pod ([`layout`]);
//! - the names of every object of a cluster ([`names`]), kept short by one hash ([`hash`]);
//! - the pooler's control channel and file layout ([`pooler`]);
//! - how values are quoted in the texts both sides write ([`quote`]).
//!
//! Both sides import these; neither imports the other.

pub mod hash;
pub mod layout;
pub mod markers;
pub mod names;
pub mod pooler;
pub mod quote;
