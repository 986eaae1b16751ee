//! Limits on a request's `variables`, measured on the JSON text before it is
//! parsed: a million-item array or ten thousand nested arrays is refused
//! before the server builds a value for every item or recurses once per level.

use super::{check, Exceeded, Limit, Limits};

/// The deepest `max_variables_depth` may be: serde_json refuses more than 128
/// levels itself, so a larger configured depth would never be reached.
pub const MOST_VARIABLES_DEPTH: usize = 100;

impl Limits {
    /// Checks the JSON text of `variables`: its size, then its nesting
    /// (measuring stops past the limit, unless the limit only measures).
    pub fn check_variables(&self, json: &str) -> Result<(), Exceeded> {
        self.enforce(check(
            Limit::VariablesBytes,
            self.max_variables_bytes,
            json.len(),
        ))?;
        let stop = if self.measure_only.contains(Limit::VariablesDepth) {
            usize::MAX
        } else {
            self.max_variables_depth.saturating_add(1)
        };
        self.enforce(check(
            Limit::VariablesDepth,
            self.max_variables_depth,
            json_depth(json, stop),
        ))
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
    use crate::limits::measured_only_counts;

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
        let limits = Limits {
            max_variables_bytes: 100,
            max_variables_depth: 3,
            ..Limits::default()
        };
        assert!(limits.check_variables(r#"{"ids": [[1], [2]]}"#).is_ok());
        let err = limits.check_variables(r#"{"a": [[[1]]]}"#).unwrap_err();
        assert_eq!(
            (err.code, err.limit, err.measured),
            ("VARIABLES_TOO_DEEP", 3, 4)
        );
        let big = format!("{{\"ids\": [{}1]}}", "1,".repeat(100));
        let err = limits.check_variables(&big).unwrap_err();
        assert_eq!(
            (err.code, err.measured),
            ("VARIABLES_TOO_LARGE", big.len() as u64)
        );
        assert!(err.message().starts_with("`variables` has"));
    }

    #[test]
    fn measure_only_lets_variables_through_and_counts_them() {
        let limits = Limits {
            max_variables_depth: 2,
            measure_only: [Limit::VariablesDepth].into_iter().collect(),
            ..Limits::default()
        };
        let before = measured_only_counts()[Limit::VariablesDepth as usize].1;
        assert!(limits.check_variables(r#"{"a": [[[[1]]]]}"#).is_ok());
        assert!(measured_only_counts()[Limit::VariablesDepth as usize].1 > before);
    }
}
