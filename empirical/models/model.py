"""Loading, saving and building the causal language models the toolkit attacks.

Any local Hugging Face causal-LM directory loads by path (no hub, no remote code); ``None``
means the embedded default, a tiny GPT-2 (Radford et al. 2019 architecture) with a
character-level tokenizer, trained by ``empirical.models.build`` and committed under
``empirical/assets/embedded``. Models always use the *eager* attention implementation: the
constant estimators take Hessian-vector products (second derivatives through the loss), which
fused attention kernels do not all support.

Weights are read and written as safetensors; a ``.bin`` checkpoint is only ever read by
transformers with ``torch.load(weights_only=True)``.

torch, tokenizers and transformers are imported by the functions that use them, not by this
module: a verification whose every stage is cached names the embedded model's folder
(``EMBEDDED_MODEL_DIR``) without paying the ≈ 6 s of importing transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from empirical.outputs import ordinary_permissions
from theory.errors import HftaInputError

if TYPE_CHECKING:
    import torch
    from transformers import (
        GPT2LMHeadModel,
        PretrainedConfig,
        PreTrainedModel,
        PreTrainedTokenizerBase,
        PreTrainedTokenizerFast,
    )

EMBEDDED_MODEL_DIR: Path = Path(__file__).resolve().parents[1] / "assets" / "embedded"
"""Directory of the committed embedded model (safetensors, tokenizer files, build.json)."""

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
"""Special tokens of the character-level tokenizer, ids 0, 1, 2 in that order."""

ATTENTION_IMPLEMENTATION = "eager"
TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
"""A model directory must hold at least one of these (transformers would otherwise make up an
empty tokenizer)."""


def build_char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A character-level tokenizer, built offline with the ``tokenizers`` library.

    Vocabulary: ``<pad>`` = 0, ``<eos>`` = 1, ``<unk>`` = 2, then each distinct character of
    ``alphabet`` in order of first appearance. Every character of the input is one token
    (characters outside the alphabet become ``<unk>``); decoding joins tokens without
    separators. No chat template.

    Raises:
        HftaInputError: an empty alphabet.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    characters = list(dict.fromkeys(alphabet))
    if not characters:
        raise HftaInputError("build_char_tokenizer: the alphabet is empty")
    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for character in characters:
        vocabulary[character] = len(vocabulary)
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer: PreTrainedTokenizerFast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN
    )
    return tokenizer


def tiny_gpt2(
    vocab_size: int,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 64,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 causal LM with eager attention (dropout off).

    The initialisation draws from a private copy of torch's CPU generator seeded with
    ``seed``, so the global random state is left untouched. Token ids 0 and 1 are pad and
    EOS (BOS = EOS), as in ``build_char_tokenizer``.

    Raises:
        HftaInputError: a non-positive size or ``n_embd`` not divisible by ``n_head``.
    """
    sizes = {"vocab_size": vocab_size, "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head}
    sizes["n_positions"] = n_positions
    for name, value in sizes.items():
        if value < 1:
            raise HftaInputError(f"tiny_gpt2: {name} must be positive, got {value}")
    if n_embd % n_head:
        raise HftaInputError(f"tiny_gpt2: n_embd={n_embd} is not divisible by n_head={n_head}")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    config._attn_implementation = ATTENTION_IMPLEMENTATION
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    _name_loss(model)
    model.train(False)
    return model


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-file progress bars (stderr noise for a 100k-parameter model)."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _name_loss(model: PreTrainedModel) -> None:
    """Name the causal-LM loss transformers already falls back to, so it need not warn.

    transformers infers the loss from the class name (``...ForCausalLM``); GPT-2's
    ``GPT2LMHeadModel`` does not match and would log a warning before using the same loss.
    """
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"


def _causal_lm_architecture(config: object, path: Path) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = str(getattr(config, "model_type", ""))
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise HftaInputError(f"{path}: model type '{model_type}' is not a causal language model")
    known = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]
    known_names = {known} if isinstance(known, str) else set(known)
    architectures = getattr(config, "architectures", None) or []
    if architectures and not known_names & set(architectures):
        raise HftaInputError(
            f"{path}: architecture {', '.join(architectures)} is not a causal language model "
            f"(expected {', '.join(sorted(known_names))})"
        )


def _causal_lm_directory(directory: Path) -> PretrainedConfig:
    """The config of the causal-LM folder ``directory``, after the checks every loader makes:
    the folder exists, ``config.json`` reads and names a causal LM, tokenizer files are
    present.

    Raises:
        HftaInputError: what is missing or unreadable, naming the folder.
    """
    from transformers import AutoConfig

    if not directory.is_dir():
        raise HftaInputError(f"{directory}: model directory not found")
    if not (directory / "config.json").is_file():
        raise HftaInputError(f"{directory}: no config.json, not a Hugging Face model directory")
    try:
        config: PretrainedConfig = AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise HftaInputError(f"{directory}: unreadable model config ({exc})") from None
    _causal_lm_architecture(config, directory)
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise HftaInputError(
            f"{directory}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)})"
        )
    return config


def load_model(
    path: Path | None = None, *, device: str = "cpu", dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer from a local directory (``None``: the embedded one).

    Local files only, ``trust_remote_code=False``, eager attention, in ``dtype`` on
    ``device``, in eval mode. A tokenizer without a pad token gets its EOS token as pad (the
    usual choice for GPT-2-style models); ``empirical.datasets.text.encode`` supervises the EOS by
    position, so that choice does not hide the end of a response. ``dtype`` None is
    ``torch.float32``.

    Raises:
        HftaInputError: a missing directory, no ``config.json``, a model that is not a causal
            LM, no (fast) tokenizer, or weights that fail to load.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    directory = EMBEDDED_MODEL_DIR if path is None else Path(path)
    _causal_lm_directory(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except (ValueError, OSError, KeyError) as exc:
        raise HftaInputError(f"{directory}: no usable tokenizer ({exc})") from None
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise HftaInputError(f"{directory}: tokenizer is not a fast (tokenizers) tokenizer")
    if len(tokenizer) < 2:
        raise HftaInputError(f"{directory}: tokenizer has an empty vocabulary")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        with _quiet_progress():
            model = AutoModelForCausalLM.from_pretrained(
                directory,
                local_files_only=True,
                trust_remote_code=False,
                attn_implementation=ATTENTION_IMPLEMENTATION,
                dtype=torch.float32 if dtype is None else dtype,
                use_kernels=False,  # no hub kernels: no downloaded code, and no re-kernelizing
            )
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        raise HftaInputError(f"{directory}: model weights failed to load ({exc})") from None
    _name_loss(model)
    model.to(device)  # type: ignore[arg-type]
    model.train(False)
    return model, tokenizer


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    *,
    extra_files: Mapping[str, object] | None = None,
) -> None:
    """Save model (safetensors) and tokenizer to ``directory``, atomically.

    Everything is written to a temporary sibling directory which then replaces
    ``directory``; an interrupted save leaves the old contents (or nothing) in place.
    ``extra_files`` maps file names to JSON-serialisable objects written alongside
    (``build.json``).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise HftaInputError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / "config.json").exists():
        raise HftaInputError(
            f"{directory}: a non-empty directory that holds no model; refusing to replace it"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    retired: Path | None = None
    try:
        with _quiet_progress():
            model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        for name, content in (extra_files or {}).items():
            if Path(name).name != name:
                raise HftaInputError(f"save_model: extra file name '{name}' is not a plain name")
            (staging / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        ordinary_permissions(staging)
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, retired / directory.name)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None and not directory.exists():
            os.replace(retired / directory.name, directory)
        raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json")


def _safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors file's header, with its length checked.

    Format (safetensors spec): 8 bytes little-endian header length n, n bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the data; every end offset must
    lie within the file.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise HftaInputError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise HftaInputError(
                f"{path}: truncated safetensors file (header of {length} bytes, file {size})"
            )
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            raise HftaInputError(f"{path}: corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise HftaInputError(f"{path}: corrupt safetensors header")
    shapes: dict[str, tuple[int, ...]] = {}
    data_size = size - 8 - length
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = spec["data_offsets"]
            shape = tuple(int(n) for n in spec["shape"])
        except (KeyError, TypeError, ValueError):
            raise HftaInputError(f"{path}: corrupt safetensors entry '{name}'") from None
        if not 0 <= begin <= end <= data_size:
            raise HftaInputError(
                f"{path}: truncated safetensors file (tensor '{name}' ends at byte {end} of "
                f"{data_size} data bytes)"
            )
        shapes[name] = shape
    return shapes


def check_model_directory(path: Path, field: str = "model") -> None:
    """Check a local causal-LM directory without loading its weights, so that a broken model
    is bad input (one line, exit 2) before any compute is spent.

    Checked: the folder exists; ``config.json`` reads and names a causal LM; a tokenizer is
    present and loads; the weights are safetensors with a complete header, every tensor's
    bytes within the file, and every tensor's name and shape those of the architecture the
    config describes (built on torch's ``meta`` device: no memory, no compute). Tied weights
    (the LM head sharing the embedding) may be absent from the file.

    Raises:
        HftaInputError: naming ``field``, the folder and what is wrong.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(path)
    try:
        config = _causal_lm_directory(directory)
        try:
            AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise HftaInputError(f"{directory}: no usable tokenizer ({exc})") from None
        with torch.device("meta"), _quiet_progress():
            skeleton = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
                config, attn_implementation=ATTENTION_IMPLEMENTATION
            )
        shapes = _as_loaded(_file_shapes(directory), skeleton)
        expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
        unexpected = sorted(set(shapes) - set(expected))
        if unexpected:
            raise HftaInputError(
                f"{directory}: weights hold tensor '{unexpected[0]}' that the architecture in "
                "config.json does not have"
            )
        for name, shape in shapes.items():
            if shape != expected[name]:
                raise HftaInputError(
                    f"{directory}: tensor '{name}' has shape {list(shape)}, config.json's "
                    f"architecture needs {list(expected[name])}"
                )
        tied = set(getattr(skeleton, "_tied_weights_keys", None) or [])
        missing = sorted(set(expected) - set(shapes) - tied)
        missing = [name for name in missing if not _tied_to_present(skeleton, name, shapes)]
        if missing:
            raise HftaInputError(f"{directory}: weights lack tensor '{missing[0]}'")
    except HftaInputError as exc:
        raise HftaInputError(f"{field}: {exc}") from None


def _as_loaded(
    shapes: Mapping[str, tuple[int, ...]], skeleton: torch.nn.Module
) -> dict[str, tuple[int, ...]]:
    """The file's tensor names as transformers' loader renames them before it loads them: its
    checkpoint conversion mapping for the architecture (GPT-NeoX, for one, saves its output
    layer as ``embed_out.weight`` and holds it as ``lm_head.weight``). Names are kept as they
    are where the installed transformers has no such mapping."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:  # an older transformers: no renaming on load
        return dict(shapes)
    transforms = get_model_conversion_mapping(skeleton)  # type: ignore[arg-type]
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    if not renamings:
        return dict(shapes)
    meta = skeleton.state_dict()
    prefix = getattr(skeleton, "base_model_prefix", None)
    return {
        rename_source_key(name, renamings, [], prefix, meta)[0]: shape
        for name, shape in shapes.items()
    }


def _tied_to_present(model: torch.nn.Module, name: str, shapes: Mapping[str, object]) -> bool:
    """Whether parameter ``name`` shares its storage with a tensor that the file holds."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    target = parameters.get(name)
    if target is None:
        return False
    return any(other is target and key in shapes for key, other in parameters.items())


def _file_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the folder's safetensors weights (one file or an index)."""
    single = directory / "model.safetensors"
    if single.is_file():
        return _safetensors_header(single)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise HftaInputError(f"{index}: corrupt safetensors index") from None
        shapes: dict[str, tuple[int, ...]] = {}
        for shard in sorted(set(weight_map.values())):
            if not (directory / shard).is_file():
                raise HftaInputError(f"{directory}: shard {shard} named by the index is missing")
            shapes.update(_safetensors_header(directory / shard))
        return shapes
    raise HftaInputError(
        f"{directory}: no safetensors weights (expected {' or '.join(WEIGHT_FILES)}); only "
        "safetensors checkpoints are accepted"
    )
