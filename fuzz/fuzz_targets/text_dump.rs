#![no_main]
// libFuzzer target `text_dump`: feeds each input to ctdoctor_fuzz::text_dump (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::text_dump(data));
