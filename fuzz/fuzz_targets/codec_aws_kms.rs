#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keyturn_fuzz_targets::codec_aws_kms(data));
