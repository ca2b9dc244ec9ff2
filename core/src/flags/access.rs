//! Who may read and change flags: the scope sets every flags route checks, in a file of
//! their own so that the route modules depend on it and not on one another.

use crate::keys::{Grants, Scope};

/// Keys that may change flags.
#[derive(Debug)]
pub(crate) struct FlagWriters;
impl Grants for FlagWriters {
    const SCOPES: &'static [Scope] = &[Scope::FlagsWrite];
}

/// Keys that may read flags.
#[derive(Debug)]
pub(crate) struct FlagReaders;
impl Grants for FlagReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::FlagsWrite];
}
