#![no_main]
// libFuzzer target `filter`: feeds each input to ctdoctor_fuzz::filter (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::filter(data));
