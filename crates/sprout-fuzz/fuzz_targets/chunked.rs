//! The balancer's chunked-body follower. The first byte is a read size: the same bytes fed
//! whole and in reads of that size must give the same answer, following (`advance`) and
//! decoding (`decode`) must agree, and a decoded body re-chunked must decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_proxy::fuzzing::{write_chunk, Chunked};

/// Feeds `body` in reads of `step` bytes; (bytes of the body, done, decoded data), or an error.
fn follow(body: &[u8], step: usize, decode: bool) -> Result<(usize, bool, Vec<u8>), ()> {
    let mut c = Chunked::default();
    let mut data = Vec::new();
    let mut total = 0;
    for part in body.chunks(step.max(1)) {
        let n = if decode {
            c.decode(part, &mut data)
        } else {
            c.advance(part)
        }
        .map_err(|_| ())?;
        assert!(n <= part.len());
        total += n;
        if c.is_done() {
            break;
        }
        assert_eq!(n, part.len(), "stopped early without being done");
    }
    Ok((total, c.is_done(), data))
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = follow(body, body.len(), true);
    let split = follow(body, usize::from(step), true);
    assert_eq!(whole, split, "reads of {step} bytes changed the answer");
    let advanced = follow(body, usize::from(step), false).map(|(n, done, _)| (n, done));
    assert_eq!(
        advanced,
        whole
            .as_ref()
            .map(|(n, done, _)| (*n, *done))
            .map_err(|_| ())
    );
    if let Ok((n, true, decoded)) = whole {
        assert!(decoded.len() <= n);
        let mut again = Vec::new();
        if !decoded.is_empty() {
            write_chunk(&mut again, &decoded);
        }
        // The last chunk and the empty trailer section.
        write_chunk(&mut again, b"");
        assert_eq!(
            follow(&again, again.len(), true),
            Ok((again.len(), true, decoded))
        );
    }
});
