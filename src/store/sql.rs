//! A small SQL text builder with `$n` placeholders.
//!
//! sqlx's `QueryBuilder` for the `Any` driver writes `?` placeholders, which
//! PostgreSQL does not understand; `$n` works on both engines.

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Encode, Type};

pub struct Sql {
    text: String,
    args: AnyArguments<'static>,
    count: usize,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Binds `value` and returns its placeholder, to be placed in the text.
    pub fn bind<T>(&mut self, value: T) -> String
    where
        T: Encode<'static, Any> + Type<Any> + Send + 'static,
    {
        // Adding an owned value to `AnyArguments` cannot fail for the types we
        // bind (integers, floats, strings); an error here is a programming error
        // that shows up as a failed statement, since the placeholder count is off.
        let _ = self.args.add(value);
        self.count += 1;
        format!("${}", self.count)
    }

    /// Binds every id and returns `$a, $b, …` for an `IN (…)` list, padded
    /// to a power of two with the last id repeated (which changes nothing
    /// `IN` matches). Both databases cache a connection's prepared statements
    /// by their text: padded, a batch of 300 ids and one of 400 are the same
    /// statement, prepared once, where each length would be a statement of
    /// its own, parsed and planned again (and on PostgreSQL one more round
    /// trip) and crowding the others out of the cache.
    pub fn bind_list(&mut self, ids: &[i64]) -> String {
        let padded = ids.len().next_power_of_two();
        let mut out = String::with_capacity(padded * 6);
        let last = ids.last().copied();
        let ids = ids.iter().copied().chain(last.into_iter().cycle());
        for (i, id) in ids.take(padded).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&self.bind(id));
        }
        out
    }

    pub fn bind_strings(&mut self, values: &[String]) -> String {
        let mut out = String::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&self.bind(value.clone()));
        }
        out
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn finish(self) -> (String, AnyArguments<'static>) {
        (self.text, self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_bind_order() {
        let mut sql = Sql::new("SELECT * FROM products WHERE id IN (");
        let list = sql.bind_list(&[1, 2]);
        sql.push(&list).push(") AND price_cents > ");
        let p = sql.bind(100_i64);
        sql.push(&p);
        assert_eq!(
            sql.text(),
            "SELECT * FROM products WHERE id IN ($1, $2) AND price_cents > $3"
        );
    }

    #[test]
    fn id_lists_are_padded_to_a_power_of_two_with_the_last_id() {
        let placeholders = |n: usize| {
            let ids: Vec<i64> = (1..=n as i64).collect();
            let mut sql = Sql::new("");
            let list = sql.bind_list(&ids);
            (list.split(", ").count(), sql.count)
        };
        assert_eq!(placeholders(1), (1, 1));
        assert_eq!(placeholders(3), (4, 4));
        assert_eq!(placeholders(300), (512, 512));
        assert_eq!(placeholders(400), (512, 512));
        assert_eq!(placeholders(1000), (1024, 1024));
    }
}
