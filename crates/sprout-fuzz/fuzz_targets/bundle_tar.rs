//! A tar archive (gzipped here, so the fuzzer works on the tar structure) unpacked as an
//! uploaded bundle: no panic, nothing written or linked outside the destination.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|tar: &[u8]| {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).expect("gzip into memory");
    let archive = gz.finish().expect("gzip into memory");
    sprout_fuzz::bundle::unpack_and_check(&archive);
});
