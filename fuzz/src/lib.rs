//! Shared pieces of the fuzz targets in `src/bin/`: each target is run by
//! `make fuzz` (AFL++ through cargo-afl) from its seed corpus in
//! `seeds/<target>/`, and every input it is given must get an answer or
//! an error from the code under test, never a panic, a hang or an
//! allocation out of proportion to the input.

/// Splits `data` into `n` fields at 0xff bytes (a byte no UTF-8 text
/// holds, so seeds stay readable); missing fields are empty.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0xff).collect();
    out.resize(n, &[]);
    out
}
