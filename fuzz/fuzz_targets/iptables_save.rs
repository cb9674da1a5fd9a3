#![no_main]
// libFuzzer target `iptables_save`: feeds each input to ctdoctor_fuzz::iptables_save (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::iptables_save(data));
