//! Every `data_format` parser (and gjson paths) on the same input: the first byte picks the
//! parser, the rest is the payload. Whatever parses is serialized in every output format.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sonde_plugins::codec::{self, Parser, ParserConfig, Serializer, SerializerConfig};

const PARSERS: &[&str] = &[
    "data_format = \"influx\"",
    "data_format = \"prometheus\"",
    "data_format = \"value\"\ndata_type = \"integer\"",
    "data_format = \"value\"\ndata_type = \"float\"",
    "data_format = \"json\"\ntag_keys = [\"*a*\", \"t?\"]\njson_string_fields = [\"s*\"]",
    "data_format = \"json\"\njson_query = \"a.#.b\"\njson_time_key = \"t\"\njson_time_format = \"unix_ms\"",
    "data_format = \"json_v2\"\n[[json_v2]]\n[[json_v2.field]]\npath = \"a.#(b>1)#.c\"\noptional = true\n[[json_v2.object]]\npath = \"@this\"\ntags = [\"t*\"]\n",
    "data_format = \"html\"\n[[html]]\nmeasurement_name = \"t\"\n[[html.object]]\nselector = \"table tr\"\n[[html.object.field]]\nname = \"v\"\nselector = \"td\"\noptional = true\n",
];
const SERIALIZERS: &[&str] = &[
    "data_format = \"influx\"",
    "data_format = \"json\"",
    "data_format = \"prometheus\"",
];

type Built = (Vec<Arc<dyn Parser>>, Vec<Arc<dyn Serializer>>);

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let parsers = PARSERS
            .iter()
            .map(|t| {
                let cfg: ParserConfig = toml::from_str(t).unwrap();
                codec::build_parser(&cfg, "influx").unwrap()
            })
            .collect();
        let serializers = SERIALIZERS
            .iter()
            .map(|t| {
                let cfg: SerializerConfig = toml::from_str(t).unwrap();
                codec::build_serializer(&cfg, "influx").unwrap()
            })
            .collect();
        (parsers, serializers)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let (parsers, serializers) = built();
    if pick as usize == parsers.len() {
        if let Ok(text) = std::str::from_utf8(input) {
            if let Ok(p) = codec::gjson::Path::parse(text) {
                let doc = serde_json::json!({"a": [{"b": 1, "c": [1, 2]}, {"b": 2, "c": "x"}], "t": 5});
                let _ = p.get(&doc);
            }
        }
        return;
    }
    let parser = &parsers[pick as usize % parsers.len()];
    let mut out = Vec::new();
    let _ = parser.parse(input, 0, &mut out);
    for s in serializers {
        let mut buf = Vec::new();
        s.serialize(&out, &mut buf);
    }
});
