//! A panic inside a simulated node is a finding, not a tool failure: it is
//! caught, its message and location kept, and reported as a `crash`.

use std::cell::{Cell, RefCell};
use std::panic::{self, UnwindSafe};
use std::sync::Once;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                LOCATION.with(|slot| *slot.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err("message at file:line")` without printing it.
pub fn catch<T>(f: impl FnOnce() -> T + UnwindSafe) -> Result<T, String> {
    install_hook();
    CATCHING.with(|c| c.set(true));
    let result = panic::catch_unwind(f);
    CATCHING.with(|c| c.set(false));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-text payload".to_string());
        match LOCATION.with(|slot| slot.borrow_mut().take()) {
            Some(at) => format!("panic: {message} (at {at})"),
            None => format!("panic: {message}"),
        }
    })
}
