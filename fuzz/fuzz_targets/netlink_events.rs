#![no_main]
// libFuzzer target `netlink_events`: feeds each input to ctdoctor_fuzz::netlink_events (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::netlink_events(data));
