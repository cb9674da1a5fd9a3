#![no_main]
// libFuzzer target `text_keys`: feeds each input to ctdoctor_fuzz::text_keys (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::text_keys(data));
