#![no_main]
// libFuzzer target `plan_json`: feeds each input to ctdoctor_fuzz::plan_json (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::plan_json(data));
