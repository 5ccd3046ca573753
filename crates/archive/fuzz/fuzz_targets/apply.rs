//! cargo-fuzz target: arbitrary bytes applied as a layer must never touch anything outside the
//! root. The check itself lives in `../harness.rs`, shared with the stable fallback test.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../harness.rs");

fuzz_target!(|data: &[u8]| {
    fuzz_apply(data);
});
