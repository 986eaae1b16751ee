//! Limits on a request's `variables`, measured on the JSON text before it is
//! parsed: a million-item array or ten thousand nested arrays is refused
//! before the server builds a value for every item or recurses once per level.

use super::{check, Exceeded};

/// The configured maximums for `variables`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VariablesLimits {
    /// Bytes of the `variables` JSON text.
    pub max_bytes: usize,
    /// Nesting of arrays and objects, the `variables` object itself included.
    pub max_depth: usize,
}

impl VariablesLimits {
    /// The JSON parser refuses deeper nesting itself (serde_json stops at 128
    /// levels), so a larger configured depth would never be reached.
    pub const MOST_DEPTH: usize = 100;
}

impl Default for VariablesLimits {
    fn default() -> Self {
        VariablesLimits {
            // Far above what any operation of this graph sends (an order of
            // 100 lines is ~5 KB; a router's 1,000 entity representations
            // ~40 KB), far below the request body limit.
            max_bytes: 256 * 1024,
            // Input objects of this graph nest 3 levels at most.
            max_depth: 32,
        }
    }
}

impl VariablesLimits {
    /// What an exceeded limit says to the client.
    pub fn message(exceeded: &Exceeded) -> String {
        format!(
            "`variables` has {} {}, more than the {} allowed",
            exceeded.measured, exceeded.what, exceeded.limit
        )
    }

    /// Checks the JSON text of `variables`: its size, then its nesting
    /// (measuring stops past the limit).
    pub fn check(&self, json: &str) -> Result<(), Exceeded> {
        check("VARIABLES_TOO_LARGE", "bytes", self.max_bytes, json.len())?;
        check(
            "VARIABLES_TOO_DEEP",
            "levels of nested arrays and objects",
            self.max_depth,
            json_depth(json, self.max_depth.saturating_add(1)),
        )
    }
}

/// The deepest nesting of arrays and objects in a JSON text (brackets inside
/// strings not counted), measuring no further than `stop`. The text need not
/// be valid: the parser reports that.
fn json_depth(json: &str, stop: usize) -> usize {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut deepest = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest >= stop {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_skips_strings_and_escapes() {
        assert_eq!(json_depth("{}", 100), 1);
        assert_eq!(json_depth(r#"{"a": [1, {"b": []}]}"#, 100), 4);
        assert_eq!(json_depth(r#"{"a": "[[[\"[[[", "b": [1]}"#, 100), 2);
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(json_depth(&deep, 33), 33);
    }

    #[test]
    fn size_then_depth_have_their_codes() {
        let limits = VariablesLimits {
            max_bytes: 100,
            max_depth: 3,
        };
        assert!(limits.check(r#"{"ids": [[1], [2]]}"#).is_ok());
        let err = limits.check(r#"{"a": [[[1]]]}"#).unwrap_err();
        assert_eq!(
            (err.code, err.limit, err.measured),
            ("VARIABLES_TOO_DEEP", 3, 4)
        );
        let big = format!("{{\"ids\": [{}1]}}", "1,".repeat(100));
        let err = limits.check(&big).unwrap_err();
        assert_eq!((err.code, err.measured), ("VARIABLES_TOO_LARGE", big.len()));
    }
}
