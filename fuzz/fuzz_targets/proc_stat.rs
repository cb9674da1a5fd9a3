#![no_main]
// libFuzzer target `proc_stat`: feeds each input to ctdoctor_fuzz::proc_stat (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::proc_stat(data));
