//! Measures a GraphQL document's text without parsing it: its lexical
//! tokens, and how deeply its brackets, braces and parentheses nest. A huge
//! token stream is refused before the parser allocates for it, and a deeply
//! nested one before the parser (and every recursive walk after it) recurses
//! once per level.

/// Tokens in `text` (names, numbers, strings, punctuators; whitespace, commas
/// and comments are not tokens), counting no further than `stop`.
pub fn count_tokens(text: &str, stop: usize) -> usize {
    Tokens::new(text).take(stop).count()
}

/// The deepest nesting of `{`, `[` and `(` in `text` (strings and comments
/// not counted), measuring no further than `stop`. Closing more than was
/// opened is the parser's error to report, not a depth.
pub fn nesting_depth(text: &str, stop: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    for token in Tokens::new(text) {
        match token {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest >= stop {
                    break;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The document's tokens, each given as its first byte: enough to count them
/// and to follow punctuators, without allocating.
struct Tokens<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        Tokens { text, i: 0 }
    }
}

impl Iterator for Tokens<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        let i = &mut self.i;
        while *i < bytes.len() {
            let b = bytes[*i];
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => *i += 1,
                0xEF if bytes[*i..].starts_with(&[0xEF, 0xBB, 0xBF]) => *i += 3,
                b'#' => {
                    while *i < bytes.len() && bytes[*i] != b'\n' && bytes[*i] != b'\r' {
                        *i += 1;
                    }
                }
                b'"' if bytes[*i..].starts_with(b"\"\"\"") => {
                    *i += 3;
                    while *i < bytes.len() && !bytes[*i..].starts_with(b"\"\"\"") {
                        *i += if bytes[*i..].starts_with(b"\\\"\"\"") {
                            4
                        } else {
                            1
                        };
                    }
                    *i += 3;
                    return Some(b);
                }
                b'"' => {
                    *i += 1;
                    while *i < bytes.len() && bytes[*i] != b'"' && bytes[*i] != b'\n' {
                        *i += if bytes[*i] == b'\\' { 2 } else { 1 };
                    }
                    *i += 1;
                    return Some(b);
                }
                b'.' if bytes[*i..].starts_with(b"...") => {
                    *i += 3;
                    return Some(b);
                }
                b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => {
                    *i += 1;
                    while *i < bytes.len()
                        && matches!(bytes[*i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'+' | b'-')
                    {
                        *i += 1;
                    }
                    return Some(b);
                }
                _ => {
                    // A punctuator, or a character the parser will refuse: one
                    // token either way.
                    *i += self
                        .text
                        .get(*i..)
                        .and_then(|rest| rest.chars().next())
                        .map_or(1, char::len_utf8);
                    return Some(b);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_like_the_spec_lexes() {
        assert_eq!(count_tokens("{ a }", 100), 3);
        assert_eq!(
            count_tokens("query Q($id: ID!) { product(id: $id) { title } }", 100),
            21
        );
        assert_eq!(count_tokens("{ a(s: \"x, y # z\") } # comment", 100), 8);
        assert_eq!(
            count_tokens("{ ...F } fragment F on T { a: b(x: -1.5e3) }", 100),
            18
        );
        assert_eq!(
            count_tokens("\"\"\"block \\\"\"\" string\"\"\" { a }", 100),
            4
        );
    }

    #[test]
    fn nesting_counts_brackets_braces_and_parentheses_outside_strings() {
        assert_eq!(nesting_depth("{ a }", 100), 1);
        assert_eq!(nesting_depth("{ a(f: [[1], {b: 2}]) { c } }", 100), 4);
        assert_eq!(
            nesting_depth("{ a(s: \"[[[[\", t: \"\"\"{{{\"\"\") } # ((((", 100),
            2
        );
        assert_eq!(nesting_depth("}}}} { a }", 100), 1);
        let deep = format!("{{ a(f: {}{}) }}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(nesting_depth(&deep, 65), 65);
        assert_eq!(nesting_depth(&deep, usize::MAX), 10_002);
    }

    #[test]
    fn counting_stops_at_the_limit() {
        let text = "{ a }".repeat(1_000_000);
        assert_eq!(count_tokens(&text, 10), 10);
    }
}
