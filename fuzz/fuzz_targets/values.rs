#![no_main]
// libFuzzer target `values`: feeds each input to ctdoctor_fuzz::values (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::values(data));
