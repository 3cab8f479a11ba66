//! Which instances run for a request, and in what order.
//!
//! Kong runs plugins by PRIORITY (descending; equal priorities: the alphabetically greater name
//! first) and applies at most one instance per plugin name: the most specific scope wins,
//! route+service+consumer > route+consumer > service+consumer > route+service > consumer >
//! route > service > global. Chains are computed once per route when a snapshot is compiled;
//! only the consumer part is decided per request.

use std::cmp::Reverse;

/// An instance's scope, as indexes into the snapshot's routes/services/consumers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// Route it is bound to.
    pub route: Option<usize>,
    /// Service it is bound to.
    pub service: Option<usize>,
    /// Consumer it is bound to.
    pub consumer: Option<usize>,
}

impl Scope {
    /// Rank in Kong's precedence list (0 = most specific).
    fn rank(&self) -> u8 {
        match (
            self.route.is_some(),
            self.service.is_some(),
            self.consumer.is_some(),
        ) {
            (true, true, true) => 0,
            (true, false, true) => 1,
            (false, true, true) => 2,
            (true, true, false) => 3,
            (false, false, true) => 4,
            (true, false, false) => 5,
            (false, true, false) => 6,
            (false, false, false) => 7,
        }
    }
}

/// One plugin (by name) in a chain, with the instances that may apply, most specific first.
#[derive(Debug, Clone)]
pub struct Link {
    /// The plugin name.
    pub name: String,
    /// Priority of the plugin.
    pub priority: i64,
    /// `(instance index, consumer it requires)`, in precedence order.
    pub candidates: Vec<(usize, Option<usize>)>,
}

impl Link {
    /// The instance that applies given the request's consumer (None: no consumer identified).
    pub fn select(&self, consumer: Option<usize>) -> Option<usize> {
        self.candidates
            .iter()
            .find(|(_, c)| c.is_none() || *c == consumer)
            .map(|(i, _)| *i)
    }
}

/// An instance as the chain builder sees it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Plugin name.
    pub name: &'a str,
    /// Plugin priority.
    pub priority: i64,
    /// Scope.
    pub scope: Scope,
}

/// Builds the ordered chain for a request on `route` (with its `service`); `None` for both
/// gives the chain of global instances (used when no route matched).
pub fn build(entries: &[Entry<'_>], route: Option<usize>, service: Option<usize>) -> Vec<Link> {
    build_from(entries, 0..entries.len(), route, service)
}

/// Like [`build`], considering only the entries at `candidates` (an index by route lets a
/// snapshot with many routes avoid scanning every instance for every route).
pub fn build_from(
    entries: &[Entry<'_>],
    candidates: impl Iterator<Item = usize>,
    route: Option<usize>,
    service: Option<usize>,
) -> Vec<Link> {
    let mut links: Vec<Link> = Vec::new();
    let mut ranked: Vec<(u8, usize)> = candidates
        .map(|i| (i, &entries[i]))
        .filter(|(_, e)| {
            (e.scope.route.is_none() || e.scope.route == route)
                && (e.scope.service.is_none() || e.scope.service == service)
        })
        .map(|(i, e)| (e.scope.rank(), i))
        .collect();
    ranked.sort();
    for (_, i) in ranked {
        let e = &entries[i];
        let candidate = (i, e.scope.consumer);
        match links.iter_mut().find(|l| l.name == e.name) {
            Some(link) => link.candidates.push(candidate),
            None => links.push(Link {
                name: e.name.to_string(),
                priority: e.priority,
                candidates: vec![candidate],
            }),
        }
    }
    links.sort_by(|a, b| {
        (Reverse(a.priority), Reverse(&a.name)).cmp(&(Reverse(b.priority), Reverse(&b.name)))
    });
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        name: &str,
        priority: i64,
        route: Option<usize>,
        service: Option<usize>,
        consumer: Option<usize>,
    ) -> Entry<'_> {
        Entry {
            name,
            priority,
            scope: Scope {
                route,
                service,
                consumer,
            },
        }
    }

    #[test]
    fn priority_then_greater_name_first() {
        let entries = [
            entry("a", 10, None, None, None),
            entry("b", 10, None, None, None),
            entry("c", 20, None, None, None),
        ];
        let chain = build(&entries, Some(0), Some(0));
        let names: Vec<_> = chain.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }

    #[test]
    fn most_specific_instance_wins() {
        let entries = [
            entry("p", 1, None, None, None),
            entry("p", 1, None, Some(0), None),
            entry("p", 1, Some(0), None, None),
            entry("p", 1, Some(0), None, Some(3)),
            entry("p", 1, Some(1), None, None),
        ];
        let chain = build(&entries, Some(0), Some(0));
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].select(None), Some(2));
        assert_eq!(chain[0].select(Some(3)), Some(3));
        assert_eq!(chain[0].select(Some(4)), Some(2));
        let other = build(&entries, Some(1), Some(1));
        assert_eq!(other[0].select(None), Some(4));
        let global = build(&entries, None, None);
        assert_eq!(global[0].select(None), Some(0));
    }
}
