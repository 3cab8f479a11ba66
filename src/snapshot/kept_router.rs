//! The router of the last compile on this thread, reused by the next config whose router is
//! built from the same inputs: a reload that changes plugins, consumers, upstreams or
//! certificates but no route (most edits) does not build the router again, which for 10,000
//! routes is about a tenth of the compile.

use std::cell::RefCell;
use std::sync::Arc;

use crate::router::{self, Flavor, RouteInput, Router, RouterError};

thread_local! {
    /// The last router built on this thread (the compile thread, see `reload::compiler`) and
    /// the fingerprint of its inputs. It is the running snapshot's router after a reload, so
    /// keeping it costs no memory.
    static KEPT: RefCell<Option<(u128, Arc<Router>)>> = const { RefCell::new(None) };
}

/// The router for `inputs`: the kept one when its inputs were the same, else a new one, which
/// is then kept.
pub(super) fn build(inputs: Vec<RouteInput>, flavor: Flavor) -> Result<Arc<Router>, RouterError> {
    let key = router::fingerprint(&inputs, flavor);
    // Taken either way: a kept router for other inputs is not held while a new one is built.
    if let Some((_, router)) = KEPT
        .with(|k| k.borrow_mut().take())
        .filter(|(k, _)| *k == key)
    {
        KEPT.with(|k| *k.borrow_mut() = Some((key, router.clone())));
        crate::config::drop_elsewhere(inputs);
        return Ok(router);
    }
    let router = Arc::new(Router::with_flavor(inputs, flavor)?);
    KEPT.with(|k| *k.borrow_mut() = Some((key, router.clone())));
    Ok(router)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::build;
    use crate::router::{Flavor, RouteInput};

    fn route(id: &str, path: &str) -> RouteInput {
        RouteInput {
            id: id.into(),
            paths: vec![path.into()],
            ..RouteInput::default()
        }
    }

    #[test]
    fn the_same_inputs_reuse_the_router_and_any_change_builds_a_new_one() {
        let first = build(vec![route("a", "/a"), route("b", "/b")], Flavor::default()).unwrap();
        let same = build(vec![route("a", "/a"), route("b", "/b")], Flavor::default()).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        let path = build(vec![route("a", "/a"), route("b", "/c")], Flavor::default()).unwrap();
        assert!(!Arc::ptr_eq(&same, &path));
        let mut moved = route("b", "/c");
        moved.strip_path = true;
        let field = build(vec![route("a", "/a"), moved], Flavor::default()).unwrap();
        assert!(!Arc::ptr_eq(&path, &field));
        let order = build(vec![route("b", "/c"), route("a", "/a")], Flavor::default()).unwrap();
        assert!(!Arc::ptr_eq(&path, &order));
        let flavor = build(
            vec![route("b", "/c"), route("a", "/a")],
            Flavor::Expressions,
        )
        .unwrap();
        assert!(!Arc::ptr_eq(&order, &flavor));
    }
}
