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
/// is then kept if `keep` (a snapshot that will serve; not a check such as the admin API's
/// schema validation, which would otherwise displace the running config's router).
pub(super) fn build(
    inputs: Vec<RouteInput>,
    flavor: Flavor,
    keep: bool,
) -> Result<Arc<Router>, RouterError> {
    if !keep && KEPT.with(|k| k.borrow().is_none()) {
        // A check with nothing to reuse (`proxy check` of 100,000 routes): no fingerprint.
        return Router::with_flavor(inputs, flavor).map(Arc::new);
    }
    let key = router::fingerprint(&inputs, flavor);
    let kept = KEPT.with(|k| {
        k.borrow()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, router)| router.clone())
    });
    if let Some(router) = kept {
        crate::config::drop_elsewhere(inputs);
        return Ok(router);
    }
    if keep {
        // A kept router for other inputs is not held while a new one is built.
        KEPT.with(|k| k.borrow_mut().take());
    }
    let router = Arc::new(Router::with_flavor(inputs, flavor)?);
    if keep {
        KEPT.with(|k| *k.borrow_mut() = Some((key, router.clone())));
    }
    Ok(router)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::build;
    use crate::router::{Flavor, RouteInput, Router};

    fn route(id: &str, path: &str) -> RouteInput {
        RouteInput {
            id: id.into(),
            paths: vec![path.into()],
            ..RouteInput::default()
        }
    }

    fn kept(routes: &[(&str, &str)], flavor: Flavor, keep: bool) -> Arc<Router> {
        let inputs = routes.iter().map(|(id, path)| route(id, path)).collect();
        build(inputs, flavor, keep).unwrap()
    }

    #[test]
    fn the_same_inputs_reuse_the_router_and_any_change_builds_a_new_one() {
        let plain = Flavor::default();
        let first = kept(&[("a", "/a"), ("b", "/b")], plain, true);
        assert!(Arc::ptr_eq(
            &first,
            &kept(&[("a", "/a"), ("b", "/b")], plain, true)
        ));
        // A check (not kept) neither displaces the kept router nor is kept itself.
        let check = kept(&[("c", "/c")], plain, false);
        assert!(!Arc::ptr_eq(&check, &kept(&[("c", "/c")], plain, false)));
        assert!(Arc::ptr_eq(
            &first,
            &kept(&[("a", "/a"), ("b", "/b")], plain, false)
        ));
        let path = kept(&[("a", "/a"), ("b", "/c")], plain, true);
        assert!(!Arc::ptr_eq(&first, &path));
        let mut moved = route("b", "/c");
        moved.strip_path = true;
        let field = build(vec![route("a", "/a"), moved], plain, true).unwrap();
        assert!(!Arc::ptr_eq(&path, &field));
        let order = kept(&[("b", "/c"), ("a", "/a")], plain, true);
        assert!(!Arc::ptr_eq(&path, &order));
        let flavor = kept(&[("b", "/c"), ("a", "/a")], Flavor::Expressions, true);
        assert!(!Arc::ptr_eq(&order, &flavor));
    }
}
