//! Cfg parsing, shapes and cost (ptflops convention), with the expected numbers derived by
//! hand in the comments, and malformed cfgs refused with file, line and expectation.

mod common;

use prunescope::model::{BlockKind, Cfg, Graph};

fn parse_fixture(name: &str) -> Cfg {
    Cfg::from_file(&common::darknet(name)).unwrap()
}

#[test]
fn parses_every_fixture_cfg() {
    let v3 = parse_fixture("yolov3.cfg");
    assert_eq!(v3.blocks.len(), 107);
    assert_eq!((v3.width, v3.height, v3.channels), (416, 416, 3));
    assert_eq!(v3.blocks.iter().filter(|b| matches!(b.kind, BlockKind::Convolutional(_))).count(), 75);
    assert_eq!(v3.yolo_blocks(), vec![82, 94, 106]);
    assert_eq!(v3.head_convs(), vec![81, 93, 105]);
    let tiny = parse_fixture("yolov3-tiny.cfg");
    assert_eq!(tiny.blocks.len(), 24);
    assert_eq!(tiny.yolo_blocks(), vec![16, 23]);
    // `anchors = 10,14,  23,27,  ...` with spaces; mask 1,2,3 picks pairs 1..3.
    let BlockKind::Yolo(y) = &tiny.blocks[23].kind else { panic!() };
    assert_eq!(y.head_anchors(), vec![(23.0, 27.0), (37.0, 58.0), (81.0, 82.0)]);
    let parity = parse_fixture("parity.cfg");
    assert_eq!(parity.blocks.len(), 23);
    assert_eq!(parity.blocks[7].kind, BlockKind::Route { layers: vec![6], groups: 2, group_id: 1 });
    assert_eq!(parity.blocks[19].kind, BlockKind::Route { layers: vec![18, 10], groups: 1, group_id: 0 });
    assert_eq!(parity.blocks[4].kind, BlockKind::Shortcut { from: 1 });
    let BlockKind::Convolutional(c14) = &parity.blocks[14].kind else { panic!() };
    assert!(!c14.batch_normalize);
    assert_eq!(c14.padding, 0); // size 1, pad=1 -> 1/2 = 0
}

#[test]
fn yolov3_at_416() {
    let cfg = parse_fixture("yolov3.cfg");
    let g = Graph::build(&cfg, 1, 416, 416).unwrap();
    // Given in the issue (and the well-known PyTorch-YOLOv3 count): conv weights + conv bias
    // (the three heads) + BN weight and bias.
    assert_eq!(g.total_params(), 61_949_149);
    assert_eq!(g.total_conv_macs(), 32_932_037_632);
    // conv_0: 3->32, 3x3: 32·3·9 = 864 weights + 64 BN = 928 (DESIGN.md).
    assert_eq!(g.nodes[0].params, 928);
    // Its MACs: 416²·9·3·32 = 149,520,384 conv + 2·(32·416²) BN = 11,075,584
    // + 32·416² leaky = 5,537,792 -> 166,133,760.
    assert_eq!(g.nodes[0].conv_macs, 149_520_384);
    assert_eq!(g.nodes[0].macs, 166_133_760);
    // Heads: 3 anchors x (80 + 5) = 255 channels at strides 32, 16, 8.
    assert_eq!(g.nodes[81].output_shape, vec![1, 255, 13, 13]);
    assert_eq!(g.nodes[82].output_shape, vec![1, 507, 85]); // 3·13·13
    assert_eq!(g.nodes[94].output_shape, vec![1, 2028, 85]); // 3·26·26
    assert_eq!(g.nodes[106].output_shape, vec![1, 8112, 85]); // 3·52·52
                                                              // route_83 (layers=-4) re-reads conv_79: 512 channels at 13x13; route_86 (-1, 61)
                                                              // concatenates the upsampled 256 with the 512 of block 61 -> 768 at 26x26.
    assert_eq!(g.nodes[83].output_shape, vec![1, 512, 13, 13]);
    assert_eq!(g.nodes[86].output_shape, vec![1, 768, 26, 26]);
    assert_eq!(g.nodes[86].inputs.len(), 2);
    // Head conv_81: 255·1024 + 255 bias = 261,375 params; MACs 169·1024·255 + 255·169 bias.
    assert_eq!(g.nodes[81].params, 261_375);
    assert_eq!(g.nodes[81].macs, 169 * 1024 * 255 + 255 * 169);
    // Everything that is not convolution: 3·numel for every BN+leaky conv output, the bias
    // of the three heads (one per output element) and the two upsample outputs.
    let mut extra = 0u64;
    for n in &g.nodes {
        let numel: u64 = n.output_shape.iter().map(|&d| d as u64).product();
        match n.kind {
            "convolutional" if [81, 93, 105].contains(&n.index) => extra += numel,
            "convolutional" => extra += 3 * numel,
            "upsample" => extra += numel,
            _ => {}
        }
    }
    assert_eq!(g.total_macs(), g.total_conv_macs() + extra);
    // Batch 2 doubles MACs, not parameters.
    let g2 = Graph::build(&cfg, 2, 416, 416).unwrap();
    assert_eq!(g2.total_macs(), 2 * g.total_macs());
    assert_eq!(g2.total_params(), g.total_params());
}

/// yolov3.cfg with classes=1 and filters=18: the heads shrink from 255 to 18 channels.
/// Params: −(255−18)·(1024+512+256 weights per filter + 1 bias) = −237·1,795 = −425,415
/// -> 61,523,734. Conv MACs: −237·(13²·1024 + 26²·512 + 52²·256) = −237·1,211,392 =
/// −287,099,904 -> 32,644,937,728. Head bias MACs: −237·(169+676+2704) = −841,113, so all
/// MACs 33,048,327,715 − 287,099,904 − 841,113 = 32,760,386,698. (ptflops 0.7.5 on the
/// PyTorch-YOLOv3 1.8.0 model of this cfg prints the same 61,523,734 and 32,760,386,698.)
#[test]
fn yolov3_one_class_at_416() {
    let text = std::fs::read_to_string(common::darknet("yolov3.cfg")).unwrap();
    let text = text.replace("classes=80", "classes=1").replace("filters=255", "filters=18");
    let cfg = Cfg::parse(&text, "yolov3-1cls.cfg").unwrap();
    let g = Graph::build(&cfg, 1, 416, 416).unwrap();
    assert_eq!(g.total_params(), 61_523_734);
    assert_eq!(g.total_conv_macs(), 32_644_937_728);
    assert_eq!(g.total_macs(), 32_760_386_698);
    assert_eq!(g.nodes[106].output_shape, vec![1, 8112, 6]);
}

#[test]
fn yolov3_tiny_at_416() {
    let cfg = parse_fixture("yolov3-tiny.cfg");
    let g = Graph::build(&cfg, 1, 416, 416).unwrap();
    // Params per conv (weights + BN 2·C, or + bias for the heads 15 and 22):
    //  0: 16·3·9+32=464      2: 32·16·9+64=4,672     4: 64·32·9+128=18,560
    //  6: 128·64·9+256=73,984  8: 256·128·9+512=295,424  10: 512·256·9+1024=1,180,672
    // 12: 1024·512·9+2048=4,720,640  13: 256·1024+512=262,656  14: 512·256·9+1024=1,180,672
    // 15: 255·512+255=130,815  18: 128·256+256=33,024  21: 256·384·9+512=885,248
    // 22: 255·256+255=65,535  -> sum 8,852,366.
    let expected_params = [
        (0, 464),
        (2, 4_672),
        (4, 18_560),
        (6, 73_984),
        (8, 295_424),
        (10, 1_180_672),
        (12, 4_720_640),
        (13, 262_656),
        (14, 1_180_672),
        (15, 130_815),
        (18, 33_024),
        (21, 885_248),
        (22, 65_535),
    ];
    for (i, p) in expected_params {
        assert_eq!(g.nodes[i].params, p, "params of block {i}");
    }
    assert_eq!(g.total_params(), 8_852_366);
    // Conv MACs Ho·Wo·K²·Cin·Cout: 0: 416²·432 = 74,760,192; 2,4,6,8,10,14: 199,360,512 each
    // (the halving of the map and the doubling of channels cancel); 12: 169·4,718,592 =
    // 797,442,048; 13: 169·262,144 = 44,302,336; 15: 169·130,560 = 22,064,640;
    // 18: 169·32,768 = 5,537,792; 21: 676·884,736 = 598,081,536; 22: 676·65,280 = 44,129,280.
    // Sum: 2,782,480,896.
    assert_eq!(g.total_conv_macs(), 2_782_480_896);
    assert_eq!(g.nodes[0].macs, 74_760_192 + 2 * 2_768_896 + 2_768_896);
    // maxpool_1 (2, stride 2) reads 16·416² = 2,768,896 and halves the map.
    assert_eq!(g.nodes[1].macs, 2_768_896);
    assert_eq!(g.nodes[1].output_shape, vec![1, 16, 208, 208]);
    // maxpool_11 (2, stride 1) keeps 13x13: PyTorch-YOLOv3 pads to 14x14 first and ptflops
    // counts the MaxPool2d input, 512·14·14 = 100,352.
    assert_eq!(g.nodes[11].output_shape, vec![1, 512, 13, 13]);
    assert_eq!(g.nodes[11].macs, 100_352);
    // upsample_19: output numel 128·26·26 = 86,528.
    assert_eq!(g.nodes[19].macs, 86_528);
    // Head conv_15 without BN and with a linear activation: conv + one bias per output.
    assert_eq!(g.nodes[15].macs, 22_064_640 + 255 * 169);
    assert_eq!(g.nodes[20].output_shape, vec![1, 384, 26, 26]); // 128 upsampled + 256 of conv_8
    assert_eq!(g.nodes[16].output_shape, vec![1, 507, 85]);
    assert_eq!(g.nodes[23].output_shape, vec![1, 2028, 85]);
}

#[test]
fn parity_shapes_and_route_groups() {
    let cfg = parse_fixture("parity.cfg");
    let g = Graph::build(&cfg, 2, 96, 96).unwrap();
    // route_7 keeps group 1 of 2 of conv_6's 32 channels -> 16.
    assert_eq!(g.nodes[7].output_shape, vec![2, 16, 24, 24]);
    // route_9 concatenates conv_8 (16) and route_7 (16).
    assert_eq!(g.nodes[9].output_shape, vec![2, 32, 24, 24]);
    // The stored reference output is [2, 1836, 6]: 3·6·6 + 3·24·24 = 108 + 1728.
    assert_eq!(g.nodes[15].output_shape[1] + g.nodes[22].output_shape[1], 1836);
    assert!((g.macs_percent(0) + (1..23).map(|i| g.macs_percent(i)).sum::<f64>() - 100.0).abs() < 1e-9);
}

/// A valid two-block cfg that the malformed cases below alter one line at a time.
const BASE: &str = "[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n[convolutional]\nfilters=18\nsize=1\nstride=1\npad=1\nactivation=linear\n\n[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=1\nnum=3\n";

#[test]
fn base_cfg_is_valid() {
    let cfg = Cfg::parse(BASE, "base.cfg").unwrap();
    assert_eq!(cfg.blocks.len(), 3);
    Graph::build(&cfg, 1, 64, 64).unwrap();
}

#[test]
fn malformed_cfgs_are_refused_with_line_and_expectation() {
    let cases: Vec<(&str, String, usize, &str)> = vec![
        ("unknown section", BASE.replace("[yolo]", "[yolo_head]"), 21, "unknown section [yolo_head]: expected one of"),
        ("missing key", BASE.replace("filters=8\n", ""), 6, "[convolutional] is missing the required key `filters`"),
        ("bad number", BASE.replace("size=3", "size=3x"), 9, "`size`: expected a non-negative integer, found `3x`"),
        ("bad anchor", BASE.replace("23,27", "23,2y"), 23, "`anchors`: expected numbers separated by commas, found `2y`"),
        ("head filters", BASE.replace("filters=18", "filters=255"), 14, "filters=255 of [convolutional] block 1 does not match the [yolo] head at line 21: expected 18 = 3 anchors x (1 classes + 5)"),
        ("typo key", BASE.replace("filters=8", "filter=8"), 6, "[convolutional] is missing the required key `filters`"),
        ("unknown key", BASE.replace("stride=1\npad=1\nactivation=leaky", "stride=1\npad=1\nactivation=leaky\nfoo=2"), 13, "unknown key `foo` in [convolutional]: expected one of"),
        ("no equals", BASE.replace("pad=1\nactivation=leaky", "pad 1\nactivation=leaky"), 11, "expected `key=value` or a `[section]` header, found `pad 1`"),
        ("duplicate", BASE.replace("stride=1\npad=1\nactivation=leaky", "stride=1\nstride=2\npad=1\nactivation=leaky"), 11, "`stride` is set twice in [convolutional] (first at line 10)"),
        ("activation", BASE.replace("activation=leaky", "activation=gelu"), 12, "`activation`: expected one of linear, leaky, relu, mish, swish, logistic; found `gelu`"),
        ("key before section", format!("width=3\n{BASE}"), 1, "`width` appears before any section"),
        ("first not net", BASE.replacen("[net]", "[convolutional]", 1), 1, "expected the first section to be [net], found [convolutional]"),
        ("odd anchors", BASE.replace("anchors=10,14, 23,27, 37,58", "anchors=10,14, 23,27, 37"), 23, "`anchors`: expected pairs of numbers (w,h), found 5 values"),
        ("mask range", BASE.replace("mask=0,1,2", "mask=0,1,5"), 22, "`mask`: index 5 out of range, expected 0..2"),
        ("route range", BASE.replace("[yolo]", "[route]\nlayers=-30\n\n[yolo]"), 22, "route `layers`: index -30 is out of range for block 2; expected a block before this one: 0..1 or -1..-2"),
        ("shortcut range", BASE.replace("[yolo]", "[shortcut]\nfrom=5\n\n[yolo]"), 22, "shortcut `from`: index 5 is out of range for block 2"),
        ("zero stride", BASE.replace("stride=1\npad=1\nactivation=leaky", "stride=0\npad=1\nactivation=leaky"), 10, "`stride`: expected a positive integer, found 0"),
        ("empty", String::new(), 1, "empty cfg"),
        ("broken header", BASE.replace("[yolo]", "[yolo"), 21, "expected a section header like `[convolutional]`, found `[yolo`"),
    ];
    assert!(cases.len() >= 10);
    for (what, text, line, message) in cases {
        let err = Cfg::parse(&text, "bad.cfg").expect_err(what);
        assert_eq!(err.path(), std::path::Path::new("bad.cfg"), "{what}");
        assert_eq!(err.line(), Some(line), "{what}: {err}");
        assert!(err.to_string().contains(message), "{what}: got `{err}`, expected it to contain `{message}`");
        assert!(err.to_string().starts_with(&format!("bad.cfg:{line}: ")), "{what}");
    }
}

#[test]
fn shape_errors_name_the_block_line() {
    // A route that concatenates a 64x64 map with a 32x32 one.
    let text = "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n[route]\nlayers=-1,-2\n";
    let cfg = Cfg::parse(text, "route.cfg").unwrap();
    let err = Graph::build(&cfg, 1, 64, 64).unwrap_err();
    assert_eq!(err.line(), Some(16));
    assert!(err.to_string().contains("expected equal spatial sizes"), "{err}");
    // A shortcut between different channel counts.
    let text = "[net]\n[convolutional]\nfilters=4\nsize=1\nactivation=linear\n[convolutional]\nfilters=8\nsize=1\nactivation=linear\n[shortcut]\nfrom=-2\n";
    let cfg = Cfg::parse(text, "sc.cfg").unwrap();
    let err = Graph::build(&cfg, 1, 64, 64).unwrap_err();
    assert_eq!(err.line(), Some(10));
    assert!(
        err.to_string()
            .contains("shortcut adds block 1 [1, 8, 64, 64] and block 0 [1, 4, 64, 64]: expected equal shapes"),
        "{err}"
    );
    // Input sizes must be multiples of 32.
    let cfg = parse_fixture("yolov3-tiny.cfg");
    let err = Graph::build(&cfg, 1, 400, 416).unwrap_err();
    assert!(err.to_string().contains("expected positive multiples of 32"), "{err}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let err = Cfg::from_file(std::path::Path::new("/nonexistent/x.cfg")).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/x.cfg: cannot read the cfg file"), "{err}");
}

/// Arbitrary byte soup never panics the parser.
#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let alphabet = b"[]=#,-0123456789 \nabcdefglnorstuvwxyz_";
    for _ in 0..2000 {
        let mut s = String::from("[net]\n");
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize] as char);
        }
        if let Ok(cfg) = Cfg::parse(&s, "fuzz.cfg") {
            let _ = Graph::build(&cfg, 1, 64, 64);
        }
    }
}

/// A UTF-8 byte order mark (what Notepad writes) is skipped, in text and in files.
#[test]
fn byte_order_mark_is_skipped() {
    let text = format!("\u{feff}{BASE}");
    let cfg = Cfg::parse(&text, "bom.cfg").unwrap();
    assert_eq!(cfg.blocks.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bom.cfg");
    std::fs::write(&p, text.as_bytes()).unwrap();
    assert_eq!(Cfg::from_file(&p).unwrap().blocks.len(), 3);
}

/// A Latin-1 byte (a comment written by a Windows editor): file, line and "not UTF-8".
#[test]
fn latin1_byte_is_refused_with_file_line_and_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("latin1.cfg");
    // Line 3 is `# caf\xe9`: é in Latin-1.
    let mut bytes = b"[net]\nwidth=64\n# caf".to_vec();
    bytes.push(0xE9);
    bytes.extend_from_slice(b"\nheight=64\n");
    std::fs::write(&p, &bytes).unwrap();
    let err = Cfg::from_file(&p).unwrap_err();
    assert_eq!(err.line(), Some(3), "{err}");
    let s = err.to_string();
    assert!(s.starts_with(&format!("{}:3: ", p.display())), "{s}");
    assert!(s.contains("the file is not UTF-8: byte 0xE9 at column 6"), "{s}");
}

/// Values far beyond any real model are refused at their line, naming the key and the bound,
/// instead of overflowing the cost products.
#[test]
fn absurd_values_are_refused_with_line_and_key() {
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "filters",
            BASE.replace("filters=8", "filters=2000000000"),
            8,
            "`filters`: 2000000000 is too large, expected at most 65536",
        ),
        ("size", BASE.replace("size=3", "size=99999"), 9, "`size`: 99999 is too large, expected at most 128"),
        (
            "width float",
            BASE.replace("width=64", "width=1e9"),
            2,
            "`width`: expected a non-negative integer, found `1e9`",
        ),
        (
            "width",
            BASE.replace("width=64", "width=1000000000"),
            2,
            "`width`: 1000000000 is too large, expected at most 16384",
        ),
        (
            "beyond u64",
            BASE.replace("height=64", "height=99999999999999999999999"),
            3,
            "`height`: 99999999999999999999999 is too large",
        ),
        (
            "stride",
            BASE.replace("stride=1\npad=1\nactivation=leaky", "stride=4096\npad=1\nactivation=leaky"),
            10,
            "`stride`: 4096 is too large, expected at most 128",
        ),
        ("NaN anchor", BASE.replace("23,27", "NaN,27"), 23, "`anchors`: expected positive finite numbers, found `NaN`"),
        (
            "negative anchor",
            BASE.replace("23,27", "-23,27"),
            23,
            "`anchors`: expected positive finite numbers, found `-23`",
        ),
        ("scale_x_y", BASE.replace("num=3", "num=3\nscale_x_y=inf"), 26, "`scale_x_y`: expected a number in (0, 16]"),
    ];
    for (what, text, line, message) in cases {
        let err = Cfg::parse(&text, "huge.cfg").expect_err(what);
        assert_eq!(err.line(), Some(line), "{what}: {err}");
        assert!(err.to_string().contains(message), "{what}: got `{err}`, expected `{message}`");
    }
}

/// Values each within their bound whose products overflow 64 bits: an error at the block's
/// line, not a wrapped number. Conv MACs of block 1 at 16384x16384: 16384² outputs ×
/// 65536·128² weights per filter × 65536 filters = 2^28·2^30·2^16 = 2^74 > 2^64.
#[test]
fn cost_overflow_is_an_error_not_nonsense() {
    let text = "[net]\nwidth=16384\nheight=16384\nchannels=3\n\
        [convolutional]\nfilters=65536\nsize=1\nactivation=linear\n\
        [convolutional]\nfilters=65536\nsize=128\npad=1\nactivation=linear\n";
    let cfg = Cfg::parse(text, "big.cfg").unwrap();
    let err = Graph::build(&cfg, 1, 16384, 16384).unwrap_err();
    assert_eq!(err.line(), Some(9), "{err}");
    assert!(err.to_string().contains("overflows at input 16384x16384"), "{err}");
    // Routes that double the channels each time stop at a bound instead of wrapping.
    let mut text =
        String::from("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=65536\nsize=1\nactivation=linear\n");
    for _ in 0..40 {
        text.push_str("[route]\nlayers=-1,-1\n");
    }
    let cfg = Cfg::parse(&text, "routes.cfg").unwrap();
    let err = Graph::build(&cfg, 1, 64, 64).unwrap_err();
    assert!(err.to_string().contains("route concatenates more than 1048576 channels"), "{err}");
    // So are the channels of all blocks together (effective cost keeps a flag for each):
    // 1,100 routes re-reading 65,536 channels pass 2^26 at block 1,024.
    let mut text =
        String::from("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=65536\nsize=1\nactivation=linear\n");
    for _ in 0..1100 {
        text.push_str("[route]\nlayers=-1\n");
    }
    let cfg = Cfg::parse(&text, "many.cfg").unwrap();
    let err = Graph::build(&cfg, 1, 64, 64).unwrap_err();
    assert!(err.to_string().contains("output more than 67108864 channels in all"), "{err}");
    assert_eq!(err.line(), Some(8 + 2 * 1023), "{err}");
    // Input sizes are bounded too.
    let cfg = Cfg::parse(BASE, "base.cfg").unwrap();
    let err = Graph::build(&cfg, 1, 1 << 40, 64).unwrap_err();
    assert!(err.to_string().contains("expected at most 1048576 on each side"), "{err}");
}

/// yolov4-tiny.cfg (AlexeyAB/darknet, 80 classes) with every key of the original: the [yolo]
/// keys that only steer training or Darknet's NMS are accepted, `scale_x_y` is decoded.
const YOLOV4_TINY: &str = include_str!("fixtures/yolov4-tiny.cfg");

#[test]
fn yolov4_tiny_is_accepted_with_scale_x_y() {
    let cfg = Cfg::parse(YOLOV4_TINY, "yolov4-tiny.cfg").unwrap();
    assert_eq!(cfg.blocks.len(), 38);
    assert_eq!(cfg.yolo_blocks(), vec![30, 37]);
    for i in [30, 37] {
        let BlockKind::Yolo(y) = &cfg.blocks[i].kind else { panic!() };
        assert_eq!(y.scale_x_y, 1.05);
        assert!(!y.new_coords);
    }
    let BlockKind::Yolo(y) = &cfg.blocks[37].kind else { panic!() };
    assert_eq!(y.head_anchors(), vec![(23.0, 27.0), (37.0, 58.0), (81.0, 82.0)]);
    let g = Graph::build(&cfg, 1, 416, 416).unwrap();
    assert_eq!(g.nodes[30].output_shape, vec![1, 507, 85]); // 3·13·13
    assert_eq!(g.nodes[37].output_shape, vec![1, 2028, 85]); // 3·26·26
                                                             // route_34 = upsample_33 (128) + conv_23 (256) at 26x26.
    assert_eq!(g.nodes[34].output_shape, vec![1, 384, 26, 26]);
    // A key that would change the decoded outputs is still refused, by name.
    let bad = YOLOV4_TINY.replacen("beta_nms=0.6", "beta_nms=0.6\nembedding_layer=5", 1);
    let err = Cfg::parse(&bad, "v4.cfg").unwrap_err();
    assert!(err.to_string().contains("unknown key `embedding_layer` in [yolo]"), "{err}");
    let bad = YOLOV4_TINY.replacen("scale_x_y = 1.05", "scale_x_y = 1.05\nnew_coords=2", 1);
    let err = Cfg::parse(&bad, "v4.cfg").unwrap_err();
    assert!(err.to_string().contains("`new_coords`: expected 0 or 1, found 2"), "{err}");
}

/// The head decoding with `scale_x_y`, computed by hand. One 1x1 convolution with zero
/// weights and stride 16 on a 32x32 image: a 2x2 grid whose raw outputs are the conv biases
/// (tx, ty, tw, th, obj, cls) = (ln 3, −ln 3, ln 2, 0, 0, ln 3). Darknet: x = (σ(tx)·s −
/// (s−1)/2 + cx)·stride with s = 1.2: σ(ln 3) = 0.75 -> 0.9 − 0.1 = 0.8; σ(−ln 3) = 0.25 ->
/// 0.3 − 0.1 = 0.2. Row 1 is cell (cx=1, cy=0): x = 1.8·16 = 28.8, y = 0.2·16 = 3.2,
/// w = e^{ln 2}·4 = 8, h = 1·8 = 8, obj = σ(0) = 0.5, cls = 0.75. Without scale_x_y the
/// same model gives x = 1.75·16 = 28 and y = 4.
#[test]
fn scale_x_y_decodes_like_darknet() {
    use prunescope::model::{Darknet, Layout, Weights};
    let text = "[net]\nwidth=32\nheight=32\nchannels=1\n\
        [convolutional]\nfilters=6\nsize=1\nstride=16\nactivation=linear\n\
        [yolo]\nmask=0\nanchors=4,8\nclasses=1\nscale_x_y=1.2\n";
    let run = |text: &str| -> Vec<f32> {
        let cfg = Cfg::parse(text, "s.cfg").unwrap();
        let graph = Graph::build(&cfg, 1, 32, 32).unwrap();
        let layout = Layout::of(&cfg, &graph);
        let mut w = Weights::initialize(&layout, 1);
        w.get_mut("module_list.0.conv_0.weight").unwrap().data.fill(0.0);
        let l3 = 3f32.ln();
        w.get_mut("module_list.0.conv_0.bias").unwrap().data = vec![l3, -l3, 2f32.ln(), 0.0, 0.0, l3];
        let model = Darknet::new(&cfg, &graph, &w, tch::Device::Cpu).unwrap();
        let out = model.forward(&tch::Tensor::zeros([1, 1, 32, 32], (tch::Kind::Float, tch::Device::Cpu))).unwrap();
        assert_eq!(out.size(), vec![1, 4, 6]);
        Vec::<f32>::try_from(out.get(0).get(1)).unwrap()
    };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    let got = run(text);
    assert!(close(&got, &[28.8, 3.2, 8.0, 8.0, 0.5, 0.75]), "{got:?}");
    let plain = run(&text.replace("scale_x_y=1.2\n", ""));
    assert!(close(&plain, &[28.0, 4.0, 8.0, 8.0, 0.5, 0.75]), "{plain:?}");
}

#[test]
fn directory_as_cfg_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let err = Cfg::from_file(dir.path()).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: is a directory: expected a Darknet .cfg text file", dir.path().display()));
}
