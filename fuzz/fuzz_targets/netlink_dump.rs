#![no_main]
// libFuzzer target `netlink_dump`: feeds each input to ctdoctor_fuzz::netlink_dump (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::netlink_dump(data));
