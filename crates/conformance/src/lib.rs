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
//!
//! [`snapshotter_suite!`] does the same for [`berth_core::snapshots::Snapshotter`]s; its cases
//! that write files through mounts need root and skip without it ([`skip::record`]).

// A crate of test cases: its panics are the suites' assertions.
#![allow(clippy::unwrap_used)]

pub mod content;
pub mod skip;
pub mod snapshots;

/// Expand to one `#[tokio::test]` per content-store conformance case, each on a fresh store from
/// `$setup().await` (which returns `(store, guard)`).
#[macro_export]
macro_rules! content_store_suite {
    ($setup:path) => {
        $crate::content_store_suite!(@list plain $setup);
    };
    // `optional $setup`: the setup takes the case name and returns `Option<(store, guard)>`;
    // `None` means the environment cannot host this store (the setup prints why): the case skips.
    (optional $setup:path) => {
        $crate::content_store_suite!(@list optional $setup);
    };
    (@list $mode:ident $setup:path) => {
        $crate::content_store_suite!(@cases $mode $setup;
            write_commit_info_read,
            wrong_digest_is_rejected_and_the_ingest_kept,
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
    (@cases $mode:ident $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::content_store_suite!(@store $mode $setup, $case; store, _guard);
                $crate::content::$case(&store).await;
            }
        )*
    };
    (@store plain $setup:path, $case:ident; $store:ident, $guard:ident) => {
        let ($store, $guard) = $setup().await;
    };
    (@store optional $setup:path, $case:ident; $store:ident, $guard:ident) => {
        let Some(($store, $guard)) = $setup(stringify!($case)).await else {
            return;
        };
    };
}

/// Expand to one `#[tokio::test]` per snapshotter conformance case, each on a fresh, empty
/// snapshotter from `$setup().await` (which returns `(snapshotter, guard)`); with `optional`,
/// the setup takes the case name and returns an `Option` (`None`: skip, the setup said why).
///
/// The cases of [`snapshots::mounted`] mount what the snapshotter returns (with `berth-mount`)
/// and need root; without it they print `SKIP: <case>: <why>` and pass.
#[macro_export]
macro_rules! snapshotter_suite {
    ($setup:path) => {
        $crate::snapshotter_suite!(@list plain $setup);
    };
    (optional $setup:path) => {
        $crate::snapshotter_suite!(@list optional $setup);
    };
    (@list $mode:ident $setup:path) => {
        $crate::snapshotter_suite!(@cases $mode $setup;
            prepare_then_commit_renames_key_to_name,
            keys_and_names_are_unique,
            missing_snapshots_are_not_found,
            parents_must_be_committed,
            only_active_snapshots_commit,
            committed_snapshots_have_no_mounts,
            remove_refuses_parents_with_children,
            remove_frees_the_key,
            views_are_read_only,
            mounts_are_stable,
            walk_applies_filters,
            update_applies_field_paths,
            info_reports_parent_and_times,
            usage_of_empty_snapshots,
            cleanup_keeps_live_snapshots,
            concurrent_prepares_are_atomic,
            files_flow_down_the_chain,
            deletions_in_a_layer_hide_parent_files,
            active_snapshots_are_isolated,
            views_refuse_writes,
            usage_measures_written_data,
            deep_chains_mount,
            file_metadata_survives_layers,
            cleanup_keeps_data,
            removed_snapshots_take_their_files,
        );
    };
    (@cases $mode:ident $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::snapshotter_suite!(@store $mode $setup, $case; snapshotter, _guard);
                $crate::snapshots::$case(&snapshotter).await;
            }
        )*
    };
    (@store plain $setup:path, $case:ident; $s:ident, $guard:ident) => {
        let ($s, $guard) = $setup().await;
    };
    (@store optional $setup:path, $case:ident; $s:ident, $guard:ident) => {
        let Some(($s, $guard)) = $setup(stringify!($case)).await else {
            return;
        };
    };
}
