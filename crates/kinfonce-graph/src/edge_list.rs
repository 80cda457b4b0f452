//! Graphs read from an edge-list text file: one edge per line, `i j [weight]` (whitespace or
//! comma separated, weight 1 when omitted), `#` starts a comment. Node count = largest index + 1.

use crate::error::{GraphError, Result};
use crate::graph::Graph;
use std::path::Path;

/// Parses edge-list text; `path` names the source in errors.
pub fn parse_edge_list(text: &str, path: &Path) -> Result<Graph> {
    let mut edges = Vec::new();
    let mut n = 0usize;
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| GraphError::Parse {
            path: path.to_path_buf(),
            line: lineno + 1,
            message,
        };
        let fields: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() != 2 && fields.len() != 3 {
            return Err(err(format!(
                "expected `i j [weight]`, got {} fields: {line:?}",
                fields.len()
            )));
        }
        let i: usize = fields[0].parse().map_err(|_| {
            err(format!(
                "node index {:?} is not a non-negative integer",
                fields[0]
            ))
        })?;
        let j: usize = fields[1].parse().map_err(|_| {
            err(format!(
                "node index {:?} is not a non-negative integer",
                fields[1]
            ))
        })?;
        let w: f64 = match fields.get(2) {
            Some(s) => s
                .parse()
                .map_err(|_| err(format!("weight {s:?} is not a number")))?,
            None => 1.0,
        };
        if !(w.is_finite() && w >= 0.0) {
            return Err(err(format!(
                "edge ({i}, {j}) has weight {w}: expected a finite weight >= 0"
            )));
        }
        if i == j {
            return Err(err(format!("self-loop at node {i}: pi_ii must be 0")));
        }
        n = n.max(i + 1).max(j + 1);
        edges.push((i, j, w));
    }
    if edges.is_empty() {
        return Err(GraphError::Format {
            path: path.to_path_buf(),
            message: "no edges found".into(),
        });
    }
    Graph::from_edges(n, &edges)
}

/// Reads an edge-list file.
pub fn read_edge_list(path: &Path) -> Result<Graph> {
    let text = std::fs::read_to_string(path).map_err(|source| GraphError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    parse_edge_list(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_bad_lines() {
        let p = Path::new("g.txt");
        let g = parse_edge_list("# a triangle\n0 1\n1,2,0.5\n2 0 2 # heavy\n", p).unwrap();
        assert_eq!(g.n_nodes(), 3);
        assert_eq!(g.degrees(), vec![3.0, 1.5, 2.5]);
        let e = parse_edge_list("0 1\n1 2 -0.5\n", p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "g.txt:2: edge (1, 2) has weight -0.5: expected a finite weight >= 0"
        );
        let e = parse_edge_list("3 3\n", p).unwrap_err().to_string();
        assert!(e.contains("g.txt:1: self-loop at node 3"), "{e}");
        let e = parse_edge_list("0 x\n", p).unwrap_err().to_string();
        assert!(e.contains("\"x\" is not a non-negative integer"), "{e}");
        assert!(read_edge_list(Path::new("/nonexistent/graph.txt"))
            .unwrap_err()
            .to_string()
            .starts_with("/nonexistent/graph.txt"));
    }
}
