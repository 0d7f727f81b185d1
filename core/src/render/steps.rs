//! The step budget of the upon render running on this thread: started by the render, charged
//! by the turn-counting formatter and by each include upon asks for.

use std::cell::Cell;

/// The steps an upon render may still take on this thread (`None`: not counting).
#[derive(Clone, Copy)]
struct Meter {
    left: Option<u64>,
    over: bool,
}

thread_local! {
    static UPON_STEPS: Cell<Meter> = const { Cell::new(Meter { left: None, over: false }) };
}

/// Takes `steps` from the thread's running upon render; false if that goes over its budget.
pub(super) fn charge_steps(steps: u64) -> bool {
    UPON_STEPS.with(|m| {
        let mut meter = m.get();
        let Some(left) = meter.left else {
            return true;
        };
        match left.checked_sub(steps) {
            Some(left) => meter.left = Some(left),
            None => meter.over = true,
        }
        m.set(meter);
        !meter.over
    })
}

/// Counts the steps of the upon render it is alive for (and restores the meter after).
pub(super) struct Metered {
    before: Meter,
}

impl Metered {
    pub(super) fn start(steps: u64) -> Metered {
        let before = UPON_STEPS.with(|m| {
            m.replace(Meter {
                left: Some(steps),
                over: false,
            })
        });
        Metered { before }
    }

    pub(super) fn went_over(&self) -> bool {
        UPON_STEPS.with(|m| m.get().over)
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        UPON_STEPS.with(|m| m.set(self.before));
    }
}
