#![no_main]
// libFuzzer target `scenario_toml`: feeds each input to ctdoctor_fuzz::scenario_toml (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::scenario_toml(data));
