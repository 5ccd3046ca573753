//! Conformance suites: one set of behavioural tests per store trait, run against every
//! implementation (in-process stores, and the same stores reached through berthd's gRPC API).
//!
//! Use [`content_store_suite!`] in a test file with a setup function that returns a fresh store
//! and a guard that keeps its resources (temp dirs, a daemon) alive:
//!
//! ```ignore
//! async fn setup() -> (MyStore, TempDir) { ... }
//! berth_conformance::content_store_suite!(setup);
//! ```

pub mod content;

/// Expand to one `#[tokio::test]` per content-store conformance case, each on a fresh store from
/// `$setup().await` (which returns `(store, guard)`).
#[macro_export]
macro_rules! content_store_suite {
    ($setup:path) => {
        $crate::content_store_suite!(@cases $setup;
            write_commit_info_read,
            wrong_digest_is_rejected_and_leaves_nothing,
            wrong_size_is_rejected,
            ingest_resumes_at_its_offset,
            truncate_restarts_an_ingest,
            second_writer_on_a_ref_is_refused,
            writer_for_existing_digest_reports_already_exists,
            committing_existing_content_reports_already_exists,
            labels_update_with_field_masks,
            list_applies_filters,
            delete_removes_from_the_namespace,
            namespaces_are_isolated,
            abort_discards_an_ingest,
            reads_are_bounded,
            statuses_list_and_filter,
            large_blob_round_trips,
        );
    };
    (@cases $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $setup().await;
                $crate::content::$case(&store).await;
            }
        )*
    };
    // `optional $setup`: the setup returns `Option<(store, guard)>`; `None` means the
    // environment cannot host this store (the setup prints why) and the case is skipped.
    (optional $setup:path) => {
        $crate::content_store_suite!(@optional_cases $setup;
            write_commit_info_read,
            wrong_digest_is_rejected_and_leaves_nothing,
            wrong_size_is_rejected,
            ingest_resumes_at_its_offset,
            truncate_restarts_an_ingest,
            second_writer_on_a_ref_is_refused,
            writer_for_existing_digest_reports_already_exists,
            committing_existing_content_reports_already_exists,
            labels_update_with_field_masks,
            list_applies_filters,
            delete_removes_from_the_namespace,
            namespaces_are_isolated,
            abort_discards_an_ingest,
            reads_are_bounded,
            statuses_list_and_filter,
            large_blob_round_trips,
        );
    };
    (@optional_cases $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $setup(stringify!($case)).await else {
                    return;
                };
                $crate::content::$case(&store).await;
            }
        )*
    };
}
