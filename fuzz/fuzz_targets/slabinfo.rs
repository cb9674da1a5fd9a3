#![no_main]
// libFuzzer target `slabinfo`: feeds each input to ctdoctor_fuzz::slabinfo (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::slabinfo(data));
