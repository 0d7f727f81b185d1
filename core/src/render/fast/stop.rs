//! Why a fast render stops short: upon must render it instead ([`ToUpon`]), or the render is
//! over its budget ([`Over`]).

use crate::limits::{Exceeded, Limits};

/// The fast path cannot vouch for this render: render it again with upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ToUpon;

/// Why a fast render stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Render it again with upon (see [`ToUpon`]).
    ToUpon,
    /// The render went over its budget: it fails, and upon is not asked (it would go over too:
    /// it writes the same bytes, expands the same includes and counts at least as many steps).
    Over(Over),
}

/// Which part of the budget ran out (a byte: the renderer's results stay in registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Output,
    Includes,
    Steps,
}

impl Over {
    /// What ran out, with its bound.
    pub(crate) fn exceeded(self, limits: &Limits) -> Exceeded {
        match self {
            Over::Output => Exceeded::Output(limits.max_output),
            Over::Includes => Exceeded::Includes(limits.max_includes),
            Over::Steps => Exceeded::Steps(limits.max_steps),
        }
    }
}

impl From<ToUpon> for Stop {
    fn from(_: ToUpon) -> Stop {
        Stop::ToUpon
    }
}
