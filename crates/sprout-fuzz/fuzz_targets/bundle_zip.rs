//! A zip archive unpacked as an uploaded bundle: no panic, nothing written or linked outside
//! the destination.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|zip: &[u8]| {
    sprout_fuzz::bundle::unpack_and_check(zip);
});
