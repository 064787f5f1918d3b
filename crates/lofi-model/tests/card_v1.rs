//! Version-1 model cards, as the demo of lofi 0.1.0 wrote them before version 2 (fixtures copied
//! from a `lofi demo --size tiny` run: the pre-trained trunk and its clip classifier, the
//! encoder and head of `lofi train`, the head and video classifier of `lofi train-head`), still
//! load: their model, input and producer as written, the sampling (rescale: none of these runs
//! used a stride) and, where the producer's config has them, the subsets and (head cards) the
//! post-processing filled in; a head card without a kind is a G-TAD.

use std::path::Path;

use lofi_eval::feature_folder::Sampling;
use lofi_model::card::RunSubsets;
use lofi_model::{DetectConfig, HeadArch, HeadKind, ModelCard, ModelSpec};

/// Copies fixture `name` into `dir` under its weights' stem, with a weights file of the size it
/// records (a version-1 card checks the size only), and reads it.
fn load(dir: &Path, name: &str) -> ModelCard {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/card-v1")
        .join(name);
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["version"], 1, "{name} is a version-1 card");
    let weights = dir.join(value["weights"].as_str().expect("weights name"));
    let bytes = value["weights_bytes"].as_u64().expect("size") as usize;
    std::fs::write(&weights, vec![0u8; bytes]).expect("weights");
    let card = lofi_model::card::card_path(&weights);
    std::fs::write(&card, text).expect("card");
    ModelCard::read(&card).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn version_one_cards_of_the_demo_load() {
    let cases = [
        ("pretrain-encoder.json", "pretrain", None),
        ("pretrain-classifier.json", "pretrain", None),
        ("train-encoder.json", "train", None),
        ("train-head.json", "train", None),
        (
            "train-head-head.json",
            "train-head",
            Some(("training", "validation")),
        ),
        (
            "train-head-classifier.json",
            "train-head",
            Some(("training", "validation")),
        ),
    ];
    for (name, command, subsets) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let card = load(dir.path(), name);
        assert_eq!(card.version, 1, "{name}");
        assert_eq!(card.producer.command, command, "{name}");
        assert_eq!(card.weights_sha256, None, "{name}");
        assert_eq!(card.input.sampling, Some(Sampling::Rescale), "{name}");
        assert_eq!(card.input.window_stride, None, "{name}");
        let want = subsets.map(|(train, evaluation): (&str, &str)| RunSubsets {
            train: train.into(),
            evaluation: Some(evaluation.into()),
            selection: None,
        });
        assert_eq!(card.subsets, want, "{name}");
        match (name, &card.model) {
            ("train-encoder.json", ModelSpec::Encoder { arch, num_classes }) => {
                assert_eq!(arch.to_string(), "TSM-R18 width 4");
                assert_eq!(*num_classes, None);
                assert_eq!(card.input.describe(), "16 x 1 x 64 px, rescale");
            }
            ("pretrain-encoder.json", ModelSpec::Encoder { num_classes, .. }) => {
                assert_eq!(*num_classes, None);
                // Version 1 did not record the L a pre-trained trunk is meant for.
                assert_eq!(card.input.snippets, None);
            }
            // A version-1 head card: a G-TAD (no kind then), its post-processing typed from the
            // producer's `[detect]` where the config has one (train-head), none for `lofi train`'s
            // end-to-end head (whose runs then validated with the defaults).
            (
                "train-head-head.json",
                ModelSpec::Head {
                    snippets,
                    arch,
                    detect,
                    ..
                },
            ) => {
                assert_eq!(*snippets, 16);
                assert_eq!(arch, &HeadArch::tiny(HeadKind::Gtad));
                assert_eq!(detect.as_ref(), Some(&DetectConfig::default()));
            }
            ("train-head.json", ModelSpec::Head { arch, detect, .. }) => {
                assert_eq!(arch.kind(), HeadKind::Gtad);
                assert_eq!(*detect, None);
            }
            _ => {}
        }
    }
}
