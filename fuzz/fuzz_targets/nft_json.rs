#![no_main]
// libFuzzer target `nft_json`: feeds each input to ctdoctor_fuzz::nft_json (src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctdoctor_fuzz::nft_json(data));
