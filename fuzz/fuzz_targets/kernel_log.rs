#![no_main]
// libFuzzer target `kernel_log`: feeds each input to ctdoctor_fuzz::kernel_log (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::kernel_log(data));
