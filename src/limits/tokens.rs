//! Counts a GraphQL document's lexical tokens without parsing it, so a huge
//! token stream is refused before the parser allocates for it.

/// Tokens in `text` (names, numbers, strings, punctuators; whitespace, commas
/// and comments are not tokens), counting no further than `stop`.
pub fn count_tokens(text: &str, stop: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut count = 0;
    while i < bytes.len() && count < stop {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
                count += 1;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                count += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                i += 3;
                count += 1;
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => {
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'+' | b'-')
                {
                    i += 1;
                }
                count += 1;
            }
            _ => {
                // A punctuator, or a character the parser will refuse: one
                // token either way.
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                count += 1;
            }
        }
    }
    count
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
    fn counting_stops_at_the_limit() {
        let text = "{ a }".repeat(1_000_000);
        assert_eq!(count_tokens(&text, 10), 10);
    }
}
