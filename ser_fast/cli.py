"""The ``ser-fast`` command line: ``synth`` writes the synthetic corpus, ``corpus-info`` prints a
corpus' summary, ``train`` trains Baseline, DSNet, EDRL-MEA or Sparse MERIT per fold, ``evaluate`` scores a
run and writes its report, ``enhance`` denoises a file with a trained MERIT model, ``predict`` labels a pile
of audio files with a trained model (resumable; sharded under ``torchrun``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

CLASSES_HELP = ("a named class set (4class, ravdess8, crema-d6, emodb7, msp-podcast8, msp-podcast10; for an EmoBox "
                "dataset, emobox: every class of its label map) or a comma-separated list of labels")
AUDIO_ROOT_HELP = ("EmoBox: the folder its download script ran in (the fold files' wav paths start there; default: two "
                   "levels above the dataset folder)")


def _synth(args: argparse.Namespace) -> int:
    from ser_fast.data import synthesize_corpus

    root = synthesize_corpus(args.out, speakers=args.speakers, per_class=args.per_class, condition=args.condition,
                             seed=args.seed, layout=args.layout, progress=not args.quiet)
    print(f"wrote a synthetic corpus ({args.layout} layout, condition {args.condition}) to {root}")
    print(f"load it with: ser_fast.data.load_corpus({args.layout!r}, {str(root)!r})")
    return 0


def _corpus_info(args: argparse.Namespace) -> int:
    from ser_fast.data import load_corpus
    from ser_fast.data.dimensions import CORPUS_SCALES, DimensionScale, ratings_summary

    corpus = load_corpus(args.name, args.root, classes=_class_set(args.classes), check_audio=not args.no_audio_check,
                         audio_root=args.audio_root)
    print(corpus.summary().to_table())
    given = None if args.dimension_scale is None else DimensionScale.parse(args.dimension_scale)
    print(ratings_summary(corpus, given or CORPUS_SCALES.get(corpus.name)))
    if args.protocol:
        from ser_fast.data.protocols import folds_table
        from ser_fast.training.run import make_folds

        print(folds_table(make_folds(corpus, args.protocol)))
    return 0


def _noise_bank(args: argparse.Namespace):
    from ser_fast.data import NoiseBank

    return NoiseBank.from_dir(args.noise_dir) if args.noise_dir else NoiseBank()


def _split_list(items: Sequence[str] | None) -> list[str]:
    return [k for item in items or [] for k in item.split(",") if k]


def _class_set(text: str) -> str | tuple[str, ...]:
    """``--classes``: a set's name, or labels separated by commas."""
    return tuple(_split_list([text])) if "," in text else text


def train_config(args: argparse.Namespace):
    """The training config of ``--model``: its kind's config class, from the options that apply to it."""
    import inspect

    from ser_fast.models.merit import MeritConfig
    from ser_fast.runs.config import MeritTrainConfig, TrainConfig
    from ser_fast.runs.registry import FEATURES, model_kind
    from ser_fast.runs.warm_start import check_source

    # Checked before the run spends minutes on features. A resumed run may not need its source (its started folds
    # have their weights in their checkpoints): there it is checked when it is still there.
    if args.init and (not args.resume or args.init.exists()):
        check_source(args.init, args.model)
    common = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
              "init": str(args.init.expanduser().absolute()) if args.init else "", "target": args.target,
              "dimension_scale": _dimension_scale(args)}
    # Each model's own options, by the flag that sets them; a flag left out is None.
    own = {"variant": ("--variant", args.variant), "n_components": ("--components", args.components),
           "projector_relu": ("--projector-relu", args.projector_relu or None),
           "calibration": ("--calibration", args.calibration)}
    given = {name: value for name, (_, value) in own.items() if value is not None}
    takes = inspect.signature(model_kind(args.model).model_classes[0]).parameters
    foreign = [own[name][0] for name in given if name not in takes]
    if foreign:
        raise ValueError(f"{', '.join(foreign)}: not an option of --model {args.model}")
    augment = augment_config(args)
    if model_kind(args.model).input != FEATURES:
        if args.freeze:
            raise ValueError("--freeze encoder is for the CNN models; Sparse MERIT trains its SSL model at "
                             "--encoder-lr-scale times the heads' learning rate")
        network = MeritConfig(design=args.design, backbone=args.backbone, combine=args.combine,
                              num_experts=args.experts, top_k=args.top_k)
        options = {"seen_noise": tuple(_split_list(args.seen_noise))} if args.seen_noise else {}
        config = MeritTrainConfig(network=network, accumulate=args.accumulate, learning_rate=args.merit_learning_rate,
                                  max_seconds=args.max_seconds, train_snr_db=args.train_snr, augment=augment,
                                  **common, **options)
        if args.encoder_lr_scale is not None:
            if not 0 < args.encoder_lr_scale <= 1:
                raise ValueError(f"--encoder-lr-scale must be in (0, 1], got {args.encoder_lr_scale}")
            config = dataclasses.replace(config, ssl_learning_rate=config.head_lr * args.encoder_lr_scale)
        return config
    return TrainConfig(learning_rate=args.learning_rate, max_frames=args.max_frames, precision=args.precision,
                       channels_last=not args.no_channels_last, freeze_encoder=args.freeze == "encoder",
                       encoder_lr_scale=1.0 if args.encoder_lr_scale is None else args.encoder_lr_scale,
                       augment=augment, **common, **given)


def _dimension_scale(args: argparse.Namespace) -> tuple[float, float] | None:
    """``--dimension-scale LOW,HIGH``, checked; None: the corpus' own (``ser_fast.data.dimensions``)."""
    from ser_fast.data.dimensions import DimensionScale

    if args.dimension_scale is None:
        return None
    if args.target == "categorical":
        raise ValueError("--dimension-scale is for --target dimensional or both")
    scale = DimensionScale.parse(args.dimension_scale)
    return scale.low, scale.high


def augment_config(args: argparse.Namespace):
    """``--augment``, ``--augment-config``, ``--noise-dir`` and ``--rir-dir`` as an AugmentConfig, checked now rather
    than at the first batch: the folders exist (made absolute, so a resume from elsewhere finds them), simulated rooms
    have pyroomacoustics, and no option is given that nothing would use."""
    from ser_fast.data.augmentation import AugmentConfig
    from ser_fast.data.augmentation.rooms import PYROOMACOUSTICS_HINT, rooms_simulable
    from ser_fast.runs.registry import FEATURES, model_kind

    settings = {}
    if args.augment_config is not None:
        try:
            settings = json.loads(args.augment_config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"--augment-config {args.augment_config}: not a readable JSON file ({error})") from None
        if not isinstance(settings, dict):
            raise ValueError(f"--augment-config {args.augment_config}: expected a JSON object of AugmentConfig's "
                             f"fields, got {type(settings).__name__}")
    if args.augment is not None:
        settings["kinds"] = list(AugmentConfig.parse(args.augment).kinds)
    kinds = settings.get("kinds") or []
    if args.augment_config is not None and not kinds:
        raise ValueError(f"--augment-config {args.augment_config} names no augmentation: add --augment KINDS (or "
                         "\"kinds\" in the file)")
    if args.rir_dir is not None and "reverb" not in kinds:
        raise ValueError("--rir-dir is for the reverb augmentation: add reverb to --augment")
    if args.noise_dir is not None and "noise" not in kinds and model_kind(args.model).input == FEATURES:
        raise ValueError("--noise-dir is for the noise augmentation (or Sparse MERIT's mixtures): add noise to "
                         "--augment")
    if args.noise_dir is not None and "noise" in kinds:
        settings["noise_dir"] = str(args.noise_dir)
    if args.rir_dir is not None:
        settings["rir_dir"] = str(args.rir_dir)
    for name in ("noise_dir", "rir_dir"):
        if settings.get(name):
            folder = Path(settings[name]).expanduser()
            if not folder.is_dir():
                raise ValueError(f"{'--' + name.replace('_', '-')} {folder}: no such folder")
            settings[name] = str(folder.absolute())
    if "reverb" in kinds and not settings.get("rir_dir") and not rooms_simulable():
        raise ValueError(f"--augment reverb simulates rooms with pyroomacoustics; {PYROOMACOUSTICS_HINT}, or give "
                         "recorded impulse responses with --rir-dir")
    return AugmentConfig.from_dict(settings)


def _train(args: argparse.Namespace) -> int:
    from ser_fast.data import load_corpus
    from ser_fast.runs.registry import WAVEFORM, model_kind
    from ser_fast.training import train_run
    from ser_fast.training.distributed import is_main
    from ser_fast.training.run import refuse_torchrun

    kind = model_kind(args.model)
    refuse_torchrun(kind)
    config = train_config(args)
    corpus = load_corpus(args.corpus, args.root, classes=_class_set(args.classes), audio_root=args.audio_root)
    folds = "all" if args.fold == "all" else [int(k) for k in args.fold.split(",")]
    bank = _noise_bank(args) if kind.input == WAVEFORM else None  # the noisy pairs' noise
    results = train_run(corpus, args.out, config, protocol=args.protocol, folds=folds, resume=args.resume,
                        progress=not args.quiet, bank=bank, device=args.device)
    if is_main():
        for fold, state in results.items():
            key, value = next(iter(state.items()))
            names = {"best_f1": "macro-F1", "best_uar": "UAR"}
            shown = f"mean CCC {value:.3f}" if key == "best_ccc" else f"{names.get(key, key)} {100 * value:.2f} %"
            print(f"{fold}: best validation {shown} at epoch {state['best_epoch']}")
        print(f"run written to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ser_fast.data import load_corpus
    from ser_fast.data.dimensions import DimensionScale
    from ser_fast.evaluation import MeritResults, score_run, write_report
    from ser_fast.runs.layout import read_run_json

    # The run's own classes unless asked otherwise: a corpus scored on other classes is refused with the reason.
    classes = _class_set(args.classes) if args.classes else tuple(read_run_json(args.run_dir)["classes"])
    corpus = load_corpus(args.corpus, args.root, classes=classes, audio_root=args.audio_root)
    noise = None
    if args.noise:
        noise = "all" if args.noise == ["all"] else _split_list(args.noise)
    scale = None
    if args.dimension_scale is not None:
        if read_run_json(args.run_dir)["config"].get("target", "categorical") == "categorical":
            raise ValueError(f"--dimension-scale is for a run with a dimensional head; {args.run_dir} is categorical")
        scale = DimensionScale.parse(args.dimension_scale)
    results = score_run(args.run_dir, corpus, noise=noise, snrs_db=args.snr, noise_bank=_noise_bank(args),
                        seed=args.seed, enhancement=not args.no_enhancement_scores, progress=not args.quiet,
                        dimension_scale=scale)
    merit = isinstance(results, MeritResults)
    model = f"Sparse MERIT ({results.design})" if merit else results.model
    report = write_report(results, args.out or args.run_dir / f"eval-{corpus.name}",
                          title=f"{model} trained on {results.train_corpus}, evaluated on {results.eval_corpus}")
    if merit:
        for condition in results.conditions:
            scores, rated = condition.scores, condition.dimensional
            shown = [] if scores is None else [f"macro-F1 {100 * scores.macro_f1:.2f} %, UAR {100 * scores.uar:.2f} %"]
            shown += [] if rated is None else [f"mean CCC {rated.mean_ccc:.3f}"]
            print(f"{condition.name}: {', '.join(shown)}")
    else:
        clean = results.clean
        if clean.pooled is not None:
            print(f"{results.model} on {results.eval_corpus}: UAR {100 * clean.uar:.2f} %, WA {100 * clean.wa:.2f} %, "
                  f"macro-F1 {100 * clean.macro_f1:.2f} % (clean)")
        if clean.dimensional is not None:
            ccc = ", ".join(f"{name} {value:.3f}" for name, value in zip(clean.dimensional.dimensions,
                                                                          clean.dimensional.ccc))
            print(f"{results.model} on {results.eval_corpus}: mean CCC {clean.dimensional.mean_ccc:.3f} ({ccc}; "
                  "clean)")
    print(f"report: {report}")
    return 0


def _enhance(args: argparse.Namespace) -> int:
    import soundfile as sf
    import torch

    from ser_fast.data.audio import load_audio
    from ser_fast.frontend.constants import SAMPLE_RATE
    from ser_fast.runs.layout import model_folder
    from ser_fast.runs.model_files import ModelFileError
    from ser_fast.runs.saved import load_model

    try:
        folder = model_folder(args.run_dir, args.fold)
    except ModelFileError as error:
        raise FileNotFoundError(f"no trained MERIT fold to enhance with: {error}") from None
    model, _, _ = load_model(folder)
    if not hasattr(model, "enhance"):
        raise ValueError(f"{folder} holds a {type(model).__name__}, which does not enhance speech; point --run at a "
                         "Sparse MERIT run")
    wave = torch.from_numpy(load_audio(args.input, SAMPLE_RATE)).unsqueeze(0)
    enhanced = model.enhance(wave)[0].numpy()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, enhanced, SAMPLE_RATE, subtype="FLOAT" if args.output.suffix.lower() == ".wav" else None)
    print(f"enhanced {args.input} with {folder} -> {args.output} ({len(enhanced) / SAMPLE_RATE:.2f} s at 16 kHz)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ser_fast.inference.onnx_export import export_run, read_metadata

    if args.int8:
        if args.calibration is None or args.input != "waveform" or args.task != "ser":
            raise ValueError("--int8 needs --calibration DIR (recordings like those the model will label) and the "
                             "waveform SER graph (no --input features, no --task se)")
        from ser_fast.inference.onnx_quantize import calibration_waves, quantize_waveform_model
        from ser_fast.runs.layout import model_folder
        from ser_fast.runs.model_files import read_model_files
        from ser_fast.runs.registry import FEATURES, model_kind

        # Checked before the export's minute of work: the model kind, then the calibration audio.
        if model_kind(read_model_files(model_folder(args.run_dir, args.fold)).kind).input != FEATURES:
            raise ValueError("--int8 quantises the CNN models' convolutions; a Sparse MERIT graph (transformer and "
                             "LSTM) stays float32: export it without --int8")
        waves = calibration_waves([args.calibration])
        with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.is_dir() else None) as scratch:
            float_path = export_run(args.run_dir, Path(scratch) / "float32.onnx", args.fold, opset=args.opset,
                                    inputs="waveform")
            path = quantize_waveform_model(float_path, args.out, waves)
    else:
        path = export_run(args.run_dir, args.out, args.fold, opset=args.opset, inputs=args.input, task=args.task)
    metadata = read_metadata(path)
    if metadata["task"] == "se":
        print(f"exported {metadata['model']}'s enhancement graph (noisy samples in, enhanced samples out) to {path}")
    else:
        shown = [f"{', '.join(metadata['classes'])}: calibrated probabilities, temperature "
                 f"{metadata['temperature']:.3g}"] if metadata["classes"] else []
        if "dimensions" in metadata.get("outputs", {}):
            shown.append(f"{', '.join(metadata['dimensions'])} on {metadata['dimension_scale']['low']:g}-"
                         f"{metadata['dimension_scale']['high']:g}")
        print(f"exported {metadata['model']} ({metadata['input']} in; out: {'; '.join(shown)}) to {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ser_fast.inference.inputs import list_inputs
    from ser_fast.inference.predict_job import run_predict
    from ser_fast.inference.recognizer import EmotionRecognizer
    from ser_fast.inference.segments import read_segments
    from ser_fast.inference.writers import output_format

    # These are checked before the model loads, so a typo costs no waiting.
    output_format(args.out)
    segments = None if args.segments is None else "vad" if args.segments == "vad" else read_segments(args.segments)
    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"--run {args.run_dir}: no such folder (expected a run folder written by "
                                "ser-fast train, one of its fold folders, or a saved recognizer)")
    recognizer = EmotionRecognizer.from_pretrained(args.run_dir, fold=args.fold, precision=args.precision,
                                                   compile=args.compile)
    summary = run_predict(recognizer, list_inputs(args.inputs), args.out, workers=args.workers,
                          batch_size=args.batch_size, window_s=args.window, hop_s=args.hop,
                          return_embedding=args.embeddings, progress=not args.quiet, classes=args.classes,
                          min_confidence=args.min_confidence, segments=segments)
    if summary.rank == 0:
        print(summary.line())
    return 0


def _probability(text: str) -> float:
    """An argparse type: a probability in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {text!r}")
    return value


def _count(minimum: int):
    """An argparse type: an int >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def _reproduce(args: argparse.Namespace) -> int:
    from ser_fast.data import load_corpus
    from ser_fast.reproduce import GridSettings, parse_shard, reproduce

    corpus = load_corpus(args.corpus, args.root, classes=_class_set(args.classes), audio_root=args.audio_root)
    crosses = []
    for spec in args.cross or []:
        name, _, root = spec.partition("=")
        if not name or not root:
            raise ValueError(f"--cross {spec!r}: expected NAME=DIR, e.g. msp-improv=/data/MSP-IMPROV")
        other = load_corpus(name, Path(root), classes=corpus.classes)
        if other.name == corpus.name:  # two corpora in one layout: the setting is named for the folder
            other.name = f"{other.name}-{Path(root).name}"
        crosses.append(other)
    settings = GridSettings(seeds=args.seeds, epochs=args.epochs, max_frames=args.max_frames, protocol=args.protocol,
                            device=args.device)
    done = reproduce(args.experiment, corpus, args.out, crosses=crosses, settings=settings,
                     systems=_split_list(args.systems) or None, shard=parse_shard(args.shard) if args.shard else None,
                     merge=args.merge, bank=_noise_bank(args), cells_dir=args.cells, progress=not args.quiet)
    for label, error in done.failed:
        print(f"cell {label} failed: {error}", file=sys.stderr)
    if done.results is None:
        print(f"shard {args.shard} done; when every shard is, run the same command with --merge instead of --shard")
    else:
        print("\n".join(f"wrote {path}" for path in done.files[:2]))
    return 1 if done.failed else 0


_COMMANDS = {"synth": _synth, "corpus-info": _corpus_info, "train": _train, "evaluate": _evaluate,
            "enhance": _enhance, "export": _export, "predict": _predict, "reproduce": _reproduce}


def build_parser() -> argparse.ArgumentParser:
    from ser_fast.models.losses import CALIBRATIONS
    from ser_fast.models.targets import TARGETS
    from ser_fast.runs.precision import PRECISIONS
    from ser_fast.runs.registry import kind_names
    from ser_fast.training.run import PROTOCOLS

    parser = argparse.ArgumentParser(prog="ser-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write the synthetic emotional-speech corpus")
    synth.add_argument("out", type=Path, help="output folder (created)")
    synth.add_argument("--speakers", type=int, default=10)
    synth.add_argument("--per-class", type=int, default=24, help="utterances per speaker and class")
    synth.add_argument("--condition", default="studio", help="recording channel: studio, telephone, far-field")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--layout", default="iemocap", choices=("iemocap", "manifest"))
    synth.add_argument("--quiet", action="store_true", help="no progress bar")

    info = commands.add_parser("corpus-info", help="load a corpus and print its summary")
    info.add_argument("name", help="iemocap, msp-improv, msp-podcast, ravdess, crema-d, emodb, manifest or emobox")
    info.add_argument("root", type=Path, help="the corpus folder (for manifest: the CSV/JSONL file; for emobox: "
                                              "EmoBox/data/<dataset>)")
    info.add_argument("--audio-root", type=Path, help=AUDIO_ROOT_HELP)
    info.add_argument("--protocol", choices=PROTOCOLS, help="also list this protocol's folds (e.g. emobox)")
    info.add_argument("--classes", default="4class", help=CLASSES_HELP)
    info.add_argument("--no-audio-check", action="store_true", help="do not open every audio file's header")
    info.add_argument("--dimension-scale", metavar="LOW,HIGH",
                      help="the scale the corpus rates arousal/valence/dominance on (default: the corpus' own)")

    train = commands.add_parser("train", help="train Baseline, DSNet, EDRL-MEA or Sparse MERIT, one model per fold")
    train.add_argument("--model", choices=kind_names(), default="dsnet",
                       help="edrl-mea: EDRL blocks aligned by multiblock PLS, fitted after the best epoch")
    train.add_argument("--corpus", required=True, help="a load_corpus name (iemocap, ..., manifest)")
    train.add_argument("--root", type=Path, required=True)
    train.add_argument("--audio-root", type=Path, help=AUDIO_ROOT_HELP)
    train.add_argument("--classes", default="4class", help=CLASSES_HELP)
    train.add_argument("--protocol", choices=PROTOCOLS, default="loso")
    train.add_argument("--fold", default="all", help='"all" or 0-based fold indices, e.g. "0" or "0,3"')
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--max-frames", type=int, default=600, help="frames per utterance (cut or repeated)")
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: bf16 autocast where the CPU has AMX or AVX512-BF16")
    train.add_argument("--no-channels-last", action="store_true")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="the run folder")
    train.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--init", type=Path, metavar="MODEL_DIR_OR_RUN",
                       help="start from a trained ser_fast model (a run's best fold, or a model folder): every tensor "
                            "of the same name and shape is copied, the rest (e.g. the output layer of another class "
                            "set) starts afresh; the log lists both")
    train.add_argument("--freeze", choices=("encoder",), help="keep the encoder as it starts (with --init)")
    train.add_argument("--target", choices=TARGETS, default="categorical",
                       help="what the model predicts: emotion classes, arousal/valence/dominance (a regression head "
                            "trained with the CCC loss on the corpus' ratings, normalised to [0, 1]; predictions come "
                            "back on the corpus' scale), or both")
    train.add_argument("--dimension-scale", metavar="LOW,HIGH",
                       help="the scale the corpus rates arousal/valence/dominance on (default: the corpus' own; "
                            "iemocap and msp-improv 1,5, msp-podcast 1,7; required for a manifest)")
    train.add_argument("--encoder-lr-scale", type=float,
                       help="the encoder's learning rate as a fraction of the rest's, in (0, 1] (Sparse MERIT: of "
                            "the heads')")
    train.add_argument("--device", default="cpu", help='"cpu" or "cuda"; under torchrun (several processes train '
                       "together, DDP), cuda means cuda:LOCAL_RANK")
    train.add_argument("--noise-dir", type=Path, help="a folder of noise recordings (one type per subfolder): Sparse "
                       "MERIT's training mixtures, and the noise augmentation's (default: the built-in noises)")
    augment = train.add_argument_group("augmentation (Sparse MERIT: all but noise, which its mixtures add)")
    augment.add_argument("--augment", metavar="KINDS",
                         help="augment the training utterances, features computed per batch: a comma list of noise, "
                              "reverb, gain, band (telephone and codec), speed")
    augment.add_argument("--augment-config", type=Path, metavar="JSON",
                         help="probabilities and ranges (AugmentConfig's fields, e.g. {\"snr_db\": [0, 15], "
                              "\"reverb_p\": 0.3})")
    augment.add_argument("--rir-dir", type=Path,
                         help="recorded room impulse responses for reverb (default: simulated rooms, "
                              "pip install 'ser_fast[augment]')")
    edrl = train.add_argument_group("EDRL-MEA (--model edrl-mea)")
    edrl.add_argument("--variant", choices=("full", "edrl", "mea"),
                      help="full (default): EDRL + MEA; edrl: no MEA; mea: MEA on the baseline encoder's h")
    edrl.add_argument("--components", type=int, help="MB-PLS components (default 16)")
    dsnet = train.add_argument_group("DSNet (--model dsnet)")
    dsnet.add_argument("--projector-relu", action="store_true",
                       help="end the projectors in eq. 2's ReLU, as the paper does (off: it lets subspaces die)")
    dsnet.add_argument("--calibration", choices=CALIBRATIONS,
                       help="L_c's distributions: softmax of standardised vectors (default) or of the raw features")
    merit = train.add_argument_group("Sparse MERIT (--model merit)")
    merit.add_argument("--design", default="sparse", choices=("sparse", "released", "dense", "mtl", "se-preprocess"))
    merit.add_argument("--backbone", default="default",
                       help='"default" (built-in small WavLM on log-Mel, from scratch), "default-waveform" (the same on '
                            'WavLM\'s waveform CNN) or a local Hugging Face folder: a WavLM / wav2vec 2.0 / HuBERT '
                            "model, or an audio-classification model of one (its SSL part is used)")
    merit.add_argument("--combine", default="concat", choices=("concat", "weighted"))
    merit.add_argument("--experts", type=int, default=3)
    merit.add_argument("--top-k", type=int, default=1)
    merit.add_argument("--accumulate", type=int, default=4, help="batches per optimizer step")
    merit.add_argument("--merit-learning-rate", type=float, help="heads' learning rate (default: by backbone)")
    merit.add_argument("--max-seconds", type=float, default=4.0, help="training crop length")
    merit.add_argument("--train-snr", type=float, default=5.0, help="SNR (dB) of the training and validation mixtures")
    merit.add_argument("--seen-noise", nargs="*", help="noise types used in training (default white pink babble)")

    evaluate = commands.add_parser("evaluate", help="score a run within its corpus, on another, and in noise")
    evaluate.add_argument("run_dir", type=Path, help="a folder written by ser-fast train")
    evaluate.add_argument("--corpus", required=True, help="the corpus to score on (the run's own, or another)")
    evaluate.add_argument("--root", type=Path, required=True)
    evaluate.add_argument("--audio-root", type=Path, help=AUDIO_ROOT_HELP)
    evaluate.add_argument("--classes", help=f"default: the run's own; {CLASSES_HELP}")
    evaluate.add_argument("--noise", nargs="*", help='noise types (e.g. white babble engine), or "all"; for a '
                          "MERIT run, the unseen types (default: every type of the bank it was not trained on)")
    evaluate.add_argument("--snr", type=float, nargs="+",
                          help="dB (default -5 0 5 10 20; -5 0 5 for a MERIT run)")
    evaluate.add_argument("--no-enhancement-scores", action="store_true", help="MERIT: skip SSNR, PESQ and STOI")
    evaluate.add_argument("--noise-dir", type=Path, help="a folder of noise recordings (one type per subfolder)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--dimension-scale", metavar="LOW,HIGH",
                          help="a run with a dimensional head: the scale this corpus rates arousal/valence/dominance "
                               "on (default: the run's on its own corpus, else the corpus' own)")
    evaluate.add_argument("--out", type=Path, help="report folder (default RUN_DIR/eval-<corpus>)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")

    enhance = commands.add_parser("enhance", help="denoise an audio file with a trained Sparse MERIT run")
    enhance.add_argument("input", type=Path, help="an audio file (any rate; resampled to 16 kHz)")
    enhance.add_argument("output", type=Path, help="the enhanced 16 kHz file to write (.wav, .flac)")
    enhance.add_argument("--run", dest="run_dir", type=Path, required=True,
                         help="a run folder written by ser-fast train --model merit")
    enhance.add_argument("--fold", help="which fold's model (default: the best on validation, as predict picks)")

    export = commands.add_parser("export", help="export a trained model to ONNX (16 kHz samples in, calibrated "
                                                "class probabilities out; or a MERIT run's enhanced samples)")
    export.add_argument("--run", dest="run_dir", type=Path, required=True, help="a run folder or one fold's folder")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--fold", help="which fold's model (default: the best on validation, as predict picks)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("--int8", action="store_true",
                        help="statically quantise the model's convolutions to int8 (onnxruntime), calibrated on "
                             "--calibration")
    export.add_argument("--calibration", type=Path, metavar="DIR",
                        help="audio (a folder, files or a list file) to calibrate --int8's activation ranges on")
    export.add_argument("--input", choices=("waveform", "features"), default="waveform",
                        help="what the graph takes: 16 kHz mono samples (the front-end inside; default) or the "
                             "log-Mel + delta features ser_fast computes (CNN models only)")
    export.add_argument("--task", choices=("ser", "se"), default="ser",
                        help="ser: class probabilities (default); se: a Sparse MERIT run's speech-enhancement graph "
                             "(noisy samples in, enhanced samples out, same length)")

    predict = commands.add_parser("predict", help="label audio files with a trained model, one row per input",
                                  description="Label audio files with a trained model: one row per input in "
                                  "--out, errors in its error field. Re-running with the same --out skips the "
                                  "inputs already there. Under torchrun, each rank takes a share of the inputs "
                                  "and rank 0 merges the parts.")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="audio files, folders (searched recursively) or .txt/.lst lists of paths")
    predict.add_argument("--run", "--run-dir", dest="run_dir", type=Path, required=True,
                         help="a run folder written by ser-fast train (or one of its folds, or a saved recognizer); "
                         "under torchrun spell it --run-dir, since torchrun takes --run for its own --run-path")
    predict.add_argument("--out", type=Path, required=True, help="the rows to write: preds.jsonl or preds.csv")
    predict.add_argument("--workers", type=_count(0), default=0,
                         help="decoding processes beside the model (0: decode in the main process)")
    predict.add_argument("--batch-size", type=_count(1), default=32)
    predict.add_argument("--window", type=float, help="seconds per timeline window for long audio")
    predict.add_argument("--hop", type=float, help="seconds between timeline windows")
    predict.add_argument("--fold", help="which fold's model (default: the best on validation)")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="auto: bf16 where the CPU has AMX or AVX512-BF16")
    predict.add_argument("--compile", action="store_true", help="torch.compile the model")
    predict.add_argument("--embeddings", action="store_true", help="write each input's embedding too")
    predict.add_argument("--min-confidence", type=_probability, metavar="P",
                         help='label a row (and a timeline window) "uncertain" when its top calibrated probability is '
                              "below P, keeping its probabilities")
    predict.add_argument("--segments", metavar="vad|FILE",
                         help="a row per speech segment with its start, end and speaker, then the file's row: 'vad' "
                              "finds them with silero-vad (pip install 'ser_fast[vad]'); FILE gives them, a CSV of "
                              "path,start,end[,speaker] or a diarizer's .rttm")
    predict.add_argument("--classes", metavar="A,B,C",
                         help="decide among these of the model's classes only, their probabilities renormalised")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")

    from ser_fast.reproduce.experiments import EXPERIMENTS

    reproduce = commands.add_parser(
        "reproduce", help="run a paper's experiment grid and report it with confidence intervals",
        description="Run a paper's grid (systems x seeds x folds, each cell an ordinary resumable training run) and "
        "write OUT/results.json, OUT/table.md and OUT/figures/. Re-running the same command skips finished cells.")
    reproduce.add_argument("experiment", choices=tuple(EXPERIMENTS))
    reproduce.add_argument("--corpus", required=True, help="the corpus to train on (a loader name, e.g. iemocap)")
    reproduce.add_argument("--root", type=Path, required=True)
    reproduce.add_argument("--audio-root", type=Path, help=AUDIO_ROOT_HELP)
    reproduce.add_argument("--classes", default="4class", help=CLASSES_HELP)
    reproduce.add_argument("--cross", action="append", metavar="NAME=DIR",
                           help="a corpus to test across corpora (repeatable)")
    reproduce.add_argument("--systems", nargs="*", help="a subset of the grid's systems (comma or space separated)")
    reproduce.add_argument("--protocol", choices=PROTOCOLS, default="loso")
    reproduce.add_argument("--seeds", type=_count(1), default=3, help="training seeds 0..N-1")
    reproduce.add_argument("--epochs", type=_count(1), default=100)
    reproduce.add_argument("--max-frames", type=_count(1), default=600,
                           help="training crop in 10-ms frames (waveform models: the same length in seconds)")
    reproduce.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    reproduce.add_argument("--out", type=Path, required=True)
    reproduce.add_argument("--cells", type=Path, help="where the cells' runs go (default OUT/cells); grids that "
                           "share it share the cells they both train")
    reproduce.add_argument("--noise-dir", type=Path, help="a folder of noise recordings (one type per subfolder)")
    reproduce.add_argument("--shard", metavar="I/N", help="run only every N-th cell from the I-th (0 <= I < N)")
    reproduce.add_argument("--merge", action="store_true", help="train nothing; write the outputs from every cell")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"ser-fast {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from ser_fast.reproduce.results import MissingCells

        if not isinstance(error, MissingCells):
            raise
        print(f"ser-fast {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
