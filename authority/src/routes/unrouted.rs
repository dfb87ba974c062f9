//! The answer for what no route took: 405 with the path's methods, or 404.

use warp::reply::Response;

use super::ROUTES;
use crate::problem::Problem;

/// The answer for a request no route took: 405 with the path's methods in
/// `Allow` when the path exists, 404 otherwise.
pub(super) fn unrouted(path: &str) -> Response {
    let methods = allowed_methods(path);
    if methods.is_empty() {
        Problem::not_found("no such endpoint").into_response()
    } else {
        Problem::method_not_allowed(&methods.join(", ")).into_response()
    }
}

/// The methods [`ROUTES`] has for `path` (templates match one segment per
/// `{placeholder}`; where several templates match, the one with the most
/// literal segments wins: `/v1/connect/tokens` is not `/v1/connect/{provider}`).
pub(super) fn allowed_methods(path: &str) -> Vec<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    let matching: Vec<(&'static str, usize)> = ROUTES
        .iter()
        .filter_map(|(method, template)| {
            let pattern: Vec<&str> = template.split('/').collect();
            let matches = pattern.len() == segments.len()
                && pattern.iter().zip(&segments).all(|(expected, actual)| {
                    (expected.starts_with('{') && !actual.is_empty()) || expected == actual
                });
            let literals = pattern.iter().filter(|part| !part.starts_with('{')).count();
            matches.then_some((*method, literals))
        })
        .collect();
    let most = matching.iter().map(|(_, literals)| *literals).max();
    let mut methods: Vec<&'static str> = matching
        .into_iter()
        .filter(|(_, literals)| Some(*literals) == most)
        .map(|(method, _)| method)
        .collect();
    methods.dedup();
    methods
}
