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

    /// Binds every value and returns `$a, $b, …` for an `IN (…)` list.
    pub fn bind_list<T>(&mut self, values: &[T]) -> String
    where
        T: Clone + Encode<'static, Any> + Type<Any> + Send + 'static,
    {
        let mut out = String::with_capacity(values.len() * 5);
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
        let list = sql.bind_list(&[1, 2, 3]);
        sql.push(&list).push(") AND price_cents > ");
        let p = sql.bind(100_i64);
        sql.push(&p);
        assert_eq!(
            sql.text(),
            "SELECT * FROM products WHERE id IN ($1, $2, $3) AND price_cents > $4"
        );
    }
}
