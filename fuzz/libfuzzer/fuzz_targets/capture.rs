#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipclog_fuzz::capture(data));
