//! Statements counted per DataLoader batch, for the batch's log span: a
//! request's batches run concurrently, so the request's own counter cannot
//! tell them apart; a task-local counter around each batch can.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static BATCH_STATEMENTS: Cell<usize>;
}

/// Runs `work`, returning its output and the statements it ran.
pub async fn counting_statements<T>(work: impl Future<Output = T>) -> (T, usize) {
    BATCH_STATEMENTS
        .scope(Cell::new(0), async {
            let output = work.await;
            (output, BATCH_STATEMENTS.with(Cell::get))
        })
        .await
}

/// Counts one statement in the batch being run, if any.
pub(super) fn note_statement() {
    let _ = BATCH_STATEMENTS.try_with(|count| count.set(count.get() + 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_are_counted_per_batch_and_nowhere_else() {
        note_statement();
        let ((), two) = counting_statements(async {
            note_statement();
            tokio::task::yield_now().await;
            note_statement();
        })
        .await;
        let ((), none) = counting_statements(async {}).await;
        assert_eq!((two, none), (2, 0));
    }
}
