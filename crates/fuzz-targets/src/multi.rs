//! Multi-column values: the packed cells of keyturn-db and the engine's
//! `PackedCells` over keyturn-codecs' multi-column codecs (multi.rs).

use crate::check::assert_no_echo;
use crate::codecs::{check_codec, split_columns};
use keyturn_codecs::{CodecConfig, build_multi};
use keyturn_db::cells::{pack, unpack};
use keyturn_engine::multi::PackedCells;
use std::sync::{Arc, OnceLock};

fn packings() -> &'static [PackedCells] {
    static P: OnceLock<Vec<PackedCells>> = OnceLock::new();
    P.get_or_init(|| {
        [
            r#"{"codec":"split-columns"}"#,
            r#"{"codec":"envelope"}"#,
            r#"{"codec":"envelope","wrap":"aes-kw"}"#,
        ]
        .iter()
        .map(|j| {
            let c: CodecConfig = serde_json::from_str(j).expect("codec config");
            PackedCells::new(Arc::from(build_multi(&c).expect("multi-column codec")))
        })
        .collect()
    })
}

/// Packed cells (`keyturn_db::cells`) and the split-columns codec over
/// them. Checks: packing is canonical (cells that unpack pack to the same
/// bytes), for the raw cells and for each codec's `Cells` (split-columns,
/// envelope); unpack errors echo nothing; the split-columns codec passes
/// the checks of every `codec_*` target.
pub fn multi_cells(data: &[u8]) {
    match unpack(data) {
        Ok(cells) => assert_eq!(pack(cells.iter().copied()), data, "pack(unpack(x)) != x"),
        Err(e) => assert_no_echo("cells::unpack", &e.to_string(), data, &[]),
    }
    for p in packings() {
        if let Ok(cells) = p.unpack(data) {
            assert_eq!(p.pack(&cells), data, "PackedCells: pack(unpack(x)) != x");
        }
    }
    check_codec(split_columns(), data);
}
