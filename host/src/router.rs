//! The router: a segment trie compiled once from the routes.
//!
//! Which route wins, most specific first:
//! 1. a route that asks for more of the request: a host, then more header
//!    matches (so `accept-version = "2"` on `/orders/*` beats a plain
//!    `/orders/{id}`: the header was asked for on purpose);
//! 2. the more specific path: segment by segment, a literal beats a
//!    `{param}`, which beats a `*` tail;
//! 3. a route with a method list over one without; then file order.
//!
//! Matching backtracks through the trie, so a route is found whatever the
//! more specific paths refuse. A path that matched only with the wrong method
//! gives 405 with the methods that would have matched.
//!
//! (`matchit` and friends return one match per path with no predicates to
//! backtrack on, hence this small trie.)

use http::uri::PathAndQuery;
use http::{HeaderMap, Method};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::Arc;

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// Shared with every match, so a match copies no parameter name.
    Param(Arc<str>),
}

/// A route path: literal segments, `{name}` segments, and an optional `*`
/// tail that matches zero or more further segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    tail: bool,
}

impl Pattern {
    pub fn parse(path: &str) -> Result<Pattern, String> {
        if !path.starts_with('/') {
            return Err("expected a path starting with '/'".into());
        }
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::new();
        let mut tail = false;
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return Err("'*' is only allowed as the last segment".into());
                }
                tail = true;
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let ok = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(format!(
                        "invalid parameter \"{part}\": expected {{name}} with letters, digits, '_' or '-'"
                    ));
                }
                segments.push(Segment::Param(Arc::from(name)));
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "invalid segment \"{part}\": a parameter must be a whole segment (\"{{id}}\") and '*' only a whole last segment"
                ));
            } else {
                segments.push(Segment::Literal((*part).to_owned()));
            }
        }
        Ok(Pattern { segments, tail })
    }

    /// Whether `prefix` (e.g. "/api/v1") is made of this pattern's leading literal segments.
    pub fn has_literal_prefix(&self, prefix: &str) -> bool {
        let parts: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        parts.len() <= self.segments.len()
            && parts
                .iter()
                .zip(&self.segments)
                .all(|(p, s)| matches!(s, Segment::Literal(l) if l == p))
    }

    /// The same requests match both (parameter names aside).
    pub fn same_shape(&self, other: &Pattern) -> bool {
        self.tail == other.tail
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }
}

/// What a route asks of a request besides its path.
#[derive(Debug, Clone)]
pub struct Predicates {
    pub methods: Option<Vec<Method>>,
    pub host: Option<String>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Predicates {
    fn weight(&self) -> (bool, usize, bool) {
        (
            self.host.is_some(),
            self.headers.len(),
            self.methods.is_some(),
        )
    }

    /// What outranks path specificity.
    fn asks(&self) -> (bool, usize) {
        (self.host.is_some(), self.headers.len())
    }
}

/// The result of routing one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// Route index (in config order); [`Router::params`] gives its path
    /// parameters to read when they are wanted.
    Found {
        route: usize,
    },
    /// The path, host and headers matched, but not the method.
    MethodNotAllowed {
        allow: Vec<Method>,
    },
    NotFound,
}

#[derive(Default)]
struct Node {
    literals: Literals,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends exactly here.
    exact: Vec<usize>,
    /// Routes whose pattern ends here with a `*` tail.
    tail: Vec<usize>,
}

/// A node's children by literal segment. Most nodes have a few, found
/// fastest by comparing; a node with many hashes them (a fast hash: the
/// keys come from the config and requests only look up, so they cannot
/// degrade the table).
enum Literals {
    Few(Vec<(String, Node)>),
    Many(HashMap<String, Node, foldhash::fast::RandomState>),
}

impl Default for Literals {
    fn default() -> Literals {
        Literals::Few(Vec::new())
    }
}

impl Literals {
    /// The most children kept in a list.
    const FEW: usize = 8;

    fn get(&self, segment: &str) -> Option<&Node> {
        match self {
            Literals::Few(list) => list.iter().find(|(l, _)| l == segment).map(|(_, n)| n),
            Literals::Many(map) => map.get(segment),
        }
    }

    /// The child for `segment`, created if missing.
    fn entry(&mut self, segment: &str) -> &mut Node {
        if let Literals::Few(list) = self
            && list.len() == Literals::FEW
            && !list.iter().any(|(l, _)| l == segment)
        {
            *self = Literals::Many(std::mem::take(list).into_iter().collect());
        }
        match self {
            Literals::Few(list) => {
                let i = match list.iter().position(|(l, _)| l == segment) {
                    Some(i) => i,
                    None => {
                        list.push((segment.to_owned(), Node::default()));
                        list.len() - 1
                    }
                };
                &mut list[i].1
            }
            Literals::Many(map) => map.entry(segment.to_owned()).or_default(),
        }
    }

    fn nodes_mut(&mut self) -> Box<dyn Iterator<Item = &mut Node> + '_> {
        match self {
            Literals::Few(list) => Box::new(list.iter_mut().map(|(_, n)| n)),
            Literals::Many(map) => Box::new(map.values_mut()),
        }
    }
}

/// Routes compiled for matching.
pub struct Router {
    root: Node,
    routes: Vec<(Arc<Pattern>, Predicates)>,
    /// Whether any route asks for a host.
    hosts: bool,
}

impl Router {
    /// Compiles routes; indices in `Match::Found` refer to this order.
    pub fn new(routes: Vec<(Pattern, Predicates)>) -> Router {
        let mut root = Node::default();
        for (i, (pattern, _)) in routes.iter().enumerate() {
            let mut node = &mut root;
            for seg in &pattern.segments {
                node = match seg {
                    Segment::Literal(l) => node.literals.entry(l),
                    Segment::Param(_) => node.param.get_or_insert_with(Default::default),
                };
            }
            if pattern.tail {
                node.tail.push(i)
            } else {
                node.exact.push(i)
            }
        }
        let hosts = routes.iter().any(|(_, p)| p.host.is_some());
        let mut router = Router {
            root,
            routes: routes.into_iter().map(|(r, p)| (Arc::new(r), p)).collect(),
            hosts,
        };
        let weights: Vec<_> = router.routes.iter().map(|(_, p)| p.weight()).collect();
        sort_candidates(&mut router.root, &weights);
        router
    }

    /// Whether any route asks for a host: when none does, the request's
    /// host need not be worked out to find its route.
    pub fn matches_hosts(&self) -> bool {
        self.hosts
    }

    /// Finds the route for a request. `host` is the request's host without port.
    pub fn route(
        &self,
        method: &Method,
        host: Option<&str>,
        headers: &HeaderMap,
        path: &str,
    ) -> Match {
        let mut search = Search {
            router: self,
            method,
            host,
            headers,
            allow: Vec::new(),
            best: None,
        };
        let segments = segments(path);
        search.walk(&self.root, &segments);
        let best = search.best;
        match best {
            Some(route) => Match::Found { route },
            None if !search.allow.is_empty() => {
                let mut allow = search.allow;
                allow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                allow.dedup();
                Match::MethodNotAllowed { allow }
            }
            None => Match::NotFound,
        }
    }

    /// What a plugin on `route` needs to read the path parameters of
    /// `path` later, if it reads any.
    pub fn params(&self, route: usize, path: PathAndQuery) -> PathParams {
        PathParams(Some((self.routes[route].0.clone(), path)))
    }
}

/// A routed request's path parameters, worked out when a plugin asks for
/// one: building them all for every request cost over a thousand
/// instructions (a split, a copy and a hashed insert each), and most
/// plugins read none. Holds the route's pattern and the path as it was
/// routed, before any prefix was stripped; none for a request that was not
/// routed (the plugin dev runner's).
#[derive(Debug, Clone, Default)]
pub struct PathParams(Option<(Arc<Pattern>, PathAndQuery)>);

impl PathParams {
    /// The `{name}` segment's value, or for `*` the tail's segments joined
    /// by `/`.
    pub fn get(&self, name: &str) -> Option<String> {
        let (pattern, path) = self.0.as_ref()?;
        let segments = segments(path.path());
        if name == "*" {
            let tail = segments.get(pattern.segments.len()..).unwrap_or_default();
            return pattern.tail.then(|| tail.join("/"));
        }
        pattern
            .segments
            .iter()
            .zip(&segments)
            .find(|(s, _)| matches!(s, Segment::Param(n) if &**n == name))
            .map(|(_, v)| (*v).to_owned())
    }
}

fn sort_candidates(node: &mut Node, weights: &[(bool, usize, bool)]) {
    // Heavier predicates first, then file order (sort is stable).
    node.exact.sort_by(|a, b| weights[*b].cmp(&weights[*a]));
    node.tail.sort_by(|a, b| weights[*b].cmp(&weights[*a]));
    for child in node.literals.nodes_mut() {
        sort_candidates(child, weights);
    }
    if let Some(p) = node.param.as_mut() {
        sort_candidates(p, weights);
    }
}

/// A path's non-empty segments, on the stack for any sane path. One pass
/// over the bytes (about 270 instructions for a three-segment path, where
/// `split('/')` and a filter, collected, cost 400).
fn segments(path: &str) -> SmallVec<[&str; 16]> {
    let mut out = SmallVec::new();
    let mut start = 0;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            if i > start {
                out.push(&path[start..i]);
            }
            start = i + 1;
        }
    }
    if start < path.len() {
        out.push(&path[start..]);
    }
    out
}

struct Search<'a> {
    router: &'a Router,
    method: &'a Method,
    host: Option<&'a str>,
    headers: &'a HeaderMap,
    allow: Vec<Method>,
    /// The best match so far. Nodes are visited most specific path first,
    /// so a later match wins only by asking for more (host, headers).
    best: Option<usize>,
}

impl Search<'_> {
    fn walk(&mut self, node: &Node, rest: &[&str]) {
        match rest.split_first() {
            None => self.pick(&node.exact),
            Some((first, rest)) => {
                if let Some(child) = node.literals.get(first) {
                    self.walk(child, rest);
                }
                if let Some(child) = node.param.as_deref() {
                    self.walk(child, rest);
                }
            }
        }
        self.pick(&node.tail);
    }

    /// Considers the first candidate of a node that matches (they are sorted).
    fn pick(&mut self, candidates: &[usize]) {
        if let Some(i) = self.first_match(candidates) {
            let routes = &self.router.routes;
            match self.best {
                Some(b) if routes[b].1.asks() >= routes[i].1.asks() => {}
                _ => self.best = Some(i),
            }
        }
    }

    fn first_match(&mut self, candidates: &[usize]) -> Option<usize> {
        for &i in candidates {
            let p = &self.router.routes[i].1;
            if p.host.as_deref().is_some_and(|h| Some(h) != self.host) {
                continue;
            }
            if !p
                .headers
                .iter()
                .all(|(n, v)| self.headers.get_all(n).iter().any(|x| x == v))
            {
                continue;
            }
            match &p.methods {
                Some(ms) if !ms.contains(self.method) => self.allow.extend(ms.iter().cloned()),
                _ => return Some(i),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: Option<&[&str]>) -> (Pattern, Predicates) {
        let methods = methods.map(|ms| {
            ms.iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                .collect()
        });
        (
            Pattern::parse(path).unwrap(),
            Predicates {
                methods,
                host: None,
                headers: vec![],
            },
        )
    }

    fn get(router: &Router, path: &str) -> Match {
        router.route(&Method::GET, None, &HeaderMap::new(), path)
    }

    #[test]
    fn segments_are_the_non_empty_pieces_between_slashes() {
        for path in [
            "",
            "/",
            "//",
            "/users/42",
            "users/42",
            "/users/42/",
            "//a///b//",
            "/é/ü/x",
            "a",
        ] {
            let expected: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            assert_eq!(segments(path).as_slice(), expected.as_slice(), "{path:?}");
        }
    }

    #[test]
    fn literal_beats_param_beats_tail() {
        let r = Router::new(vec![
            route("/users/*", None),
            route("/users/{id}", None),
            route("/users/me", None),
        ]);
        assert!(matches!(
            get(&r, "/users/me"),
            Match::Found { route: 2, .. }
        ));
        assert_eq!(get(&r, "/users/42"), Match::Found { route: 1 });
        let params = |route, path| r.params(route, PathAndQuery::from_static(path));
        assert_eq!(params(1, "/users/42").get("id").as_deref(), Some("42"));
        assert_eq!(params(1, "/users/42").get("name"), None);
        assert_eq!(params(1, "/users/42").get("*"), None);
        let tail = params(0, "/users/42/orders?x=1");
        assert_eq!(tail.get("*").as_deref(), Some("42/orders"));
        assert_eq!(params(0, "/users").get("*").as_deref(), Some(""));
        assert_eq!(PathParams::default().get("id"), None);
        assert!(matches!(
            get(&r, "/users/42/orders"),
            Match::Found { route: 0, .. }
        ));
        // A tail matches zero segments too.
        assert!(matches!(get(&r, "/users"), Match::Found { route: 0, .. }));
        assert_eq!(get(&r, "/orders"), Match::NotFound);
    }

    #[test]
    fn a_node_with_many_literal_children_finds_each() {
        // Past eight children a node hashes them: those added before and
        // after the switch are all found, and a miss is still a miss.
        let mut routes: Vec<_> = (0..20)
            .map(|i| route(&format!("/svc{i}/items"), None))
            .collect();
        routes.push(route("/{name}/items", None));
        let r = Router::new(routes);
        for i in 0..20 {
            assert!(matches!(
                get(&r, &format!("/svc{i}/items")),
                Match::Found { route, .. } if route == i
            ));
        }
        assert!(matches!(
            get(&r, "/svc99/items"),
            Match::Found { route: 20, .. }
        ));
        assert_eq!(get(&r, "/svc3/other"), Match::NotFound);
    }

    #[test]
    fn backtracks_when_the_specific_route_refuses_the_method() {
        let r = Router::new(vec![
            route("/users/{id}", Some(&["POST"])),
            route("/users/*", Some(&["GET"])),
        ]);
        assert!(matches!(get(&r, "/users/7"), Match::Found { route: 1, .. }));
        let del = r.route(&Method::DELETE, None, &HeaderMap::new(), "/users/7");
        assert_eq!(
            del,
            Match::MethodNotAllowed {
                allow: vec![Method::GET, Method::POST]
            }
        );
    }

    #[test]
    fn header_and_host_predicates_outrank_plain_routes() {
        let mut v2 = route("/orders/*", None);
        v2.1.headers = vec![("accept-version".parse().unwrap(), "2".parse().unwrap())];
        let mut hosted = route("/orders/*", None);
        hosted.1.host = Some("api.example.com".into());
        let r = Router::new(vec![route("/orders/*", None), v2, hosted]);
        let mut h = HeaderMap::new();
        assert!(matches!(
            r.route(&Method::GET, None, &h, "/orders/1"),
            Match::Found { route: 0, .. }
        ));
        h.insert("accept-version", "2".parse().unwrap());
        assert!(matches!(
            r.route(&Method::GET, None, &h, "/orders/1"),
            Match::Found { route: 1, .. }
        ));
        assert!(matches!(
            r.route(&Method::GET, Some("api.example.com"), &h, "/orders/1"),
            Match::Found { route: 2, .. }
        ));
    }

    #[test]
    fn a_header_match_outranks_a_more_specific_path() {
        let mut v2 = route("/orders/*", None);
        v2.1.headers = vec![("accept-version".parse().unwrap(), "2".parse().unwrap())];
        let r = Router::new(vec![route("/orders/{id}", None), v2]);
        let mut h = HeaderMap::new();
        assert!(matches!(
            r.route(&Method::GET, None, &h, "/orders/1"),
            Match::Found { route: 0, .. }
        ));
        h.insert("accept-version", "2".parse().unwrap());
        assert!(matches!(
            r.route(&Method::GET, None, &h, "/orders/1"),
            Match::Found { route: 1, .. }
        ));
        assert_eq!(
            r.route(&Method::GET, None, &HeaderMap::new(), "/orders/1/x"),
            Match::NotFound
        );
    }

    #[test]
    fn exact_paths_ignore_trailing_slashes() {
        let r = Router::new(vec![route("/health", None), route("/", None)]);
        assert!(matches!(get(&r, "/health/"), Match::Found { route: 0, .. }));
        assert!(matches!(get(&r, "/"), Match::Found { route: 1, .. }));
        assert_eq!(get(&r, "/healthz"), Match::NotFound);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Pattern::parse("users").is_err());
        assert!(Pattern::parse("/a/*/b").is_err());
        assert!(Pattern::parse("/a/{}").is_err());
        assert!(Pattern::parse("/a/x{id}").is_err());
    }

    #[test]
    fn literal_prefixes() {
        let p = Pattern::parse("/api/v1/users/*").unwrap();
        assert!(p.has_literal_prefix("/api/v1"));
        assert!(!p.has_literal_prefix("/api/v2"));
        assert!(!p.has_literal_prefix("/ap"));
    }
}
