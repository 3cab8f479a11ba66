//! Candidates, their ranking and the host/path index used by `select`.

use std::cmp::Reverse;
use std::collections::HashMap;

use super::regex_cache::LazyRegex;
use uuid::Uuid;

use super::bucket::{Best, Bucket, PathHit};
use super::literal::literal_prefix;
use super::matcher::{is_http_route, split_host_port, CompiledRoute, NameMatch, Priority, ReqCtx};
use super::{upstream, Flavor, RequestInfo, RouteInput, RouteMatch, RouterError, UriCaptures};

/// Namespace Kong uses to derive ids for the pieces of a route split by path group
/// (`kong/router/transform.lua`); only matters for breaking priority ties.
const SPLIT_NAMESPACE: Uuid = Uuid::from_u128(0x7f145bf9_0dce_4f91_98eb_debbce4b9f6b);

/// Longest host (without port) the lookup lower-cases on the stack; longer hosts
/// (beyond DNS's 253 bytes) only reach host-less routes.
const MAX_HOST_LEN: usize = 256;

/// How a candidate matches on paths.
#[derive(Debug, Clone, Copy)]
enum CandPaths {
    /// The route has no paths.
    None,
    /// Plain prefixes of one length.
    Prefix,
    /// Regex paths (compiled into `Index::regexes`).
    Regex,
}

/// One (route, path group) pair; its position in `Index::candidates` is its rank
/// (0 = highest priority).
#[derive(Debug)]
struct Candidate {
    /// Index into `Index::routes`.
    route: u32,
    /// The group's plain prefixes (empty for regex / path-less candidates); read by
    /// the reference lookup of the tests and by `Debug`.
    #[cfg_attr(not(test), allow(dead_code))]
    prefixes: Box<[Box<str>]>,
    /// The group's regex ids (into `Index::regexes`), in path order.
    regexes: Box<[u32]>,
}

/// The compiled router data (see `Router`'s documentation for the lookup cost).
#[derive(Debug)]
pub(crate) struct Index {
    route_count: usize,
    /// Compiled routes paired with their input index.
    routes: Vec<(usize, CompiledRoute)>,
    candidates: Vec<Candidate>,
    regexes: Vec<LazyRegex>,
    exact: HashMap<Box<str>, Bucket>,
    suffix: HashMap<Box<str>, Bucket>,
    prefix: HashMap<Box<str>, Bucket>,
    any_host: Bucket,
}

/// A candidate before ranking.
struct Draft {
    route: u32,
    priority: Priority,
    uuid: Uuid,
    group: usize,
    /// Plain prefixes of the group.
    prefixes: Vec<String>,
    /// (literal prefix, regex id) of the group's regexes, in path order.
    regexes: Vec<(String, u32)>,
    kind: CandPaths,
}

/// Groups paths like Kong's `group_by_regex_or_length`: all regex paths together,
/// plain paths by byte length; groups in order of first appearance. Returns path indices.
fn group_paths(paths: &[String]) -> Vec<Vec<usize>> {
    let mut keys: Vec<Option<usize>> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let key = if p.starts_with('~') {
            None
        } else {
            Some(p.len())
        };
        match keys.iter().position(|k| *k == key) {
            Some(g) => groups[g].push(i),
            None => {
                keys.push(key);
                groups.push(vec![i]);
            }
        }
    }
    groups
}

impl Index {
    pub(crate) fn build(inputs: Vec<RouteInput>, flavor: Flavor) -> Result<Index, RouterError> {
        let route_count = inputs.len();
        let mut routes = Vec::with_capacity(inputs.len());
        let mut regexes = Vec::new();
        let mut drafts = Vec::new();

        for (idx, mut input) in inputs.into_iter().enumerate() {
            if !is_http_route(&input) || input.expression.is_some() {
                continue;
            }
            let compiled = CompiledRoute::compile(idx, &input, flavor)?;
            if compiled.has_no_fields() && input.paths.is_empty() {
                // Kong cannot build an expression for such a route and drops it.
                continue;
            }
            let route = u32::try_from(routes.len()).map_err(|_| RouterError {
                route: idx,
                field: "id".to_owned(),
                message: "too many routes".to_owned(),
            })?;
            let base = compiled.base_priority;
            let uuid = input.uuid();

            if input.paths.is_empty() {
                drafts.push(Draft {
                    route,
                    priority: base.with_paths(false, false, 0, 0),
                    uuid,
                    group: 0,
                    prefixes: Vec::new(),
                    regexes: Vec::new(),
                    kind: CandPaths::None,
                });
            }
            let groups = group_paths(&input.paths);
            let split = groups.len() > 1;
            for (g, members) in groups.iter().enumerate() {
                let uuid = if split {
                    let n = (g + 1).to_string();
                    let name = [input.id.as_bytes(), b"#", n.as_bytes()];
                    crate::config::checks::uuid_v5(&SPLIT_NAMESPACE, &name)
                } else {
                    uuid
                };
                let first = &input.paths[members[0]];
                if first.starts_with('~') {
                    let mut rx = Vec::with_capacity(members.len());
                    for &i in members {
                        // Anchored at the start like Kong's traditional router ("^" + pattern).
                        let pattern = format!("^{}", &input.paths[i][1..]);
                        let re = LazyRegex::new(&pattern).map_err(|e| RouterError {
                            route: idx,
                            field: format!("paths[{i}]"),
                            message: format!("invalid regex: {e}"),
                        })?;
                        let id = u32::try_from(regexes.len()).unwrap_or(u32::MAX);
                        regexes.push(re);
                        rx.push((literal_prefix(&input.paths[i][1..]), id));
                    }
                    drafts.push(Draft {
                        route,
                        priority: base.with_paths(true, true, input.regex_priority, 0),
                        uuid,
                        group: g,
                        prefixes: Vec::new(),
                        regexes: rx,
                        kind: CandPaths::Regex,
                    });
                } else {
                    let priority = base.with_paths(true, false, 0, first.len());
                    // Each path is in one group: moved, not copied (the inputs end here).
                    let prefixes = members
                        .iter()
                        .map(|&i| std::mem::take(&mut input.paths[i]))
                        .collect();
                    drafts.push(Draft {
                        route,
                        priority,
                        uuid,
                        group: g,
                        prefixes,
                        regexes: Vec::new(),
                        kind: CandPaths::Prefix,
                    });
                }
            }
            routes.push((idx, compiled));
        }

        // Kong's ATC router tries matchers by (priority, uuid), both descending. The keys are
        // sorted, not the drafts: moving 10,000 large drafts about was most of the sort.
        // (route, group) is unique, so the unstable sort's order is the only one.
        let mut order: Vec<_> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| (Reverse(d.priority), Reverse(d.uuid), d.route, d.group, i))
            .collect();
        order.sort_unstable();
        let count = drafts.len();
        let mut slots: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
        let drafts = order.into_iter().filter_map(|(.., i)| slots[i].take());

        let mut index = Index {
            route_count,
            routes,
            candidates: Vec::with_capacity(count),
            regexes,
            exact: HashMap::new(),
            suffix: HashMap::new(),
            prefix: HashMap::new(),
            any_host: Bucket::default(),
        };

        for (rank, mut draft) in drafts.enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            let route = &index.routes[draft.route as usize].1;
            if route.hosts.is_empty() {
                file(&mut index.any_host, rank, &draft);
            } else {
                // Each distinct host key once per candidate.
                let mut seen: Vec<&NameMatch> = Vec::with_capacity(route.hosts.len());
                for h in &route.hosts {
                    if seen.contains(&&h.name) {
                        continue;
                    }
                    seen.push(&h.name);
                    let (map, key) = match &h.name {
                        NameMatch::Exact(k) => (&mut index.exact, k),
                        NameMatch::Suffix(k) => (&mut index.suffix, k),
                        NameMatch::Prefix(k) => (&mut index.prefix, k),
                    };
                    file(map.entry(key.clone()).or_default(), rank, &draft);
                }
            }
            index.candidates.push(Candidate {
                route: draft.route,
                prefixes: std::mem::take(&mut draft.prefixes)
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect(),
                regexes: draft.regexes.iter().map(|&(_, id)| id).collect(),
            });
        }

        let Index {
            routes,
            candidates,
            regexes,
            exact,
            suffix,
            prefix,
            any_host,
            ..
        } = &mut index;
        regexes.shrink_to_fit();
        for bucket in exact
            .values_mut()
            .chain(suffix.values_mut())
            .chain(prefix.values_mut())
            .chain(std::iter::once(any_host))
        {
            bucket
                .finish(regexes)
                .map_err(|(rank, message)| RouterError {
                    route: candidates
                        .get(rank as usize)
                        .and_then(|c| routes.get(c.route as usize))
                        .map_or(0, |r| r.0),
                    field: "paths".to_owned(),
                    message: format!("regex paths do not fit in a regex set: {message}"),
                })?;
        }
        Ok(index)
    }

    pub(crate) fn route_count(&self) -> usize {
        self.route_count
    }

    /// Whether candidate `rank` matches on everything but its path.
    fn check(&self, rank: u32, ctx: &ReqCtx<'_>) -> bool {
        match self.candidates.get(rank as usize) {
            Some(c) => self.routes[c.route as usize].1.matches(ctx),
            None => false,
        }
    }

    fn scan_bucket(&self, bucket: &Bucket, path: &str, ctx: &ReqCtx<'_>, best: &mut Best) {
        bucket.scan(path, &self.regexes, &mut |rank| self.check(rank, ctx), best);
    }

    pub(crate) fn select(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        let mut buf = [0u8; MAX_HOST_LEN];
        let ctx = req_ctx(req, &mut buf);
        let mut best = Best::none();
        if let Some(h) = ctx.host {
            if let Some(b) = self.exact.get(h) {
                self.scan_bucket(b, req.path, &ctx, &mut best);
            }
            if !self.suffix.is_empty() {
                for (i, _) in h.match_indices('.') {
                    if let Some(b) = self.suffix.get(&h[i..]) {
                        self.scan_bucket(b, req.path, &ctx, &mut best);
                    }
                }
            }
            if !self.prefix.is_empty() {
                for (i, _) in h.match_indices('.') {
                    if let Some(b) = self.prefix.get(&h[..=i]) {
                        self.scan_bucket(b, req.path, &ctx, &mut best);
                    }
                }
            }
        }
        self.scan_bucket(&self.any_host, req.path, &ctx, &mut best);
        if best.rank == u32::MAX {
            return None;
        }
        self.build_match(&best, req)
    }

    fn build_match(&self, best: &Best, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        let cand = self.candidates.get(best.rank as usize)?;
        let (input_index, route) = &self.routes[cand.route as usize];
        let (matched_path, uri_captures) = match best.hit {
            PathHit::None => (None, None),
            PathHit::Prefix(len) => (req.path.get(..len), None),
            // Like Kong's `||` chain, the first of the group's regexes that matches
            // provides the match and the captures.
            PathHit::Regex => cand
                .regexes
                .iter()
                .filter_map(|&id| self.regexes.get(id as usize))
                .find_map(|re| captures(re, req.path))
                .unwrap_or((None, None)),
        };
        let prefix = if route.strip_path { matched_path } else { None };
        let upstream_path = upstream::upstream_path(
            req.path,
            prefix,
            route.service_path(),
            route.strip_path,
            route.path_handling,
        );
        let upstream_host =
            (route.preserve_host && !req.host.is_empty()).then(|| req.host.to_owned());
        Some(RouteMatch {
            route: *input_index,
            upstream_path,
            upstream_host,
            prefix: prefix.map(str::to_owned),
            uri_captures,
            matched_method: None,
            matched_host: None,
            matched_uri: None,
            matched_headers: Vec::new(),
        })
    }
}

#[cfg(test)]
impl Index {
    /// Reference lookup for tests: every candidate in rank order, no index.
    pub(crate) fn select_naive(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        let mut buf = [0u8; MAX_HOST_LEN];
        let ctx = req_ctx(req, &mut buf);
        for (rank, c) in self.candidates.iter().enumerate() {
            if !self.routes[c.route as usize].1.matches(&ctx) {
                continue;
            }
            let hit = if let Some(p) = c.prefixes.iter().find(|p| req.path.starts_with(&***p)) {
                PathHit::Prefix(p.len())
            } else if c
                .regexes
                .iter()
                .any(|&id| self.regexes[id as usize].is_match(req.path))
            {
                PathHit::Regex
            } else if c.prefixes.is_empty() && c.regexes.is_empty() {
                PathHit::None
            } else {
                continue;
            };
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            return self.build_match(&Best { rank, hit }, req);
        }
        None
    }
}

/// Runs a regex path for its captures: returns the whole match and, when at least one
/// group took part (Kong's `has_capture`), the captures.
fn captures<'p>(re: &LazyRegex, path: &'p str) -> Option<(Option<&'p str>, Option<UriCaptures>)> {
    let caps = re.captures(path)?;
    let text = |i: usize| caps.get_group(i).map(|span| &path[span.range()]);
    let whole = text(0);
    let positional: Vec<Option<String>> = (0..caps.group_len())
        .map(|i| text(i).map(str::to_owned))
        .collect();
    let named: Vec<(String, String)> = caps
        .group_info()
        .pattern_names(regex_automata::PatternID::ZERO)
        .enumerate()
        .filter_map(|(i, name)| Some((name?.to_owned(), text(i)?.to_owned())))
        .collect();
    let keys = positional.iter().filter(|c| c.is_some()).count() + named.len();
    let uri_captures = (keys >= 2).then_some(UriCaptures { positional, named });
    Some((whole, uri_captures))
}

/// Digests the request once: host split from its port and lower-cased into `buf`.
fn req_ctx<'a>(req: &RequestInfo<'a>, buf: &'a mut [u8; MAX_HOST_LEN]) -> ReqCtx<'a> {
    let (raw_host, host_port) = split_host_port(req.host);
    ReqCtx {
        method: req.method,
        host: lower_into(raw_host, buf),
        port: host_port.or(req.dst.map(|a| a.port())),
        headers: req.headers,
        https: req.scheme == "https",
        sni: req.sni,
        src: req.src,
        dst_ip: req.dst.map(|a| a.ip()),
    }
}

/// ASCII-lower-cases `host` into `buf`; None when empty or too long.
fn lower_into<'b>(host: &str, buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// Files one candidate in a bucket.
fn file(bucket: &mut Bucket, rank: u32, draft: &Draft) {
    match draft.kind {
        CandPaths::None => bucket.add_path_less(rank),
        CandPaths::Prefix => {
            for p in &draft.prefixes {
                bucket.add_prefix(p, rank);
            }
        }
        CandPaths::Regex => {
            for (literal, id) in &draft.regexes {
                bucket.add_regex(literal, rank, *id);
            }
        }
    }
}
