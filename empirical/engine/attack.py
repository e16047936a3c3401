"""The harmful fine-tuning attack (Rosati et al. 2024, eq. 1) as a plain, measured torch loop.

The attacker fine-tunes the released model θ_0 on harmful data by minimising the supervised
response loss L with a first-order optimizer for a budget of T steps:

    θ_{s+1} = θ_s + Δ_s,  Δ_s = optimizer step on ∇L_{B_s}(θ_s) (minibatch B_s, rate η_s)

and ``run_attack`` records what the theorems talk about (docs/theorems.md) at every step:
the minibatch loss, η_s, ‖∇L_{B_s}(θ_s)‖ before clipping, ‖Δ_s‖ and ‖θ_{s+1} − θ_0‖, over the
*trainable* parameters (the adapters for LoRA). The theorems bound a *fixed* loss function,
not a minibatch; with ``probe=True`` the loop also measures, on a fixed probe batch P drawn
once from the attack data, L_P(θ_s), ‖∇L_P(θ_s)‖ and ⟨∇L_P(θ_s), Δ_s⟩, and with
``record_curvature=True`` the curvature along each segment (T1), so property tests can check
the bounds step by step. At evaluation steps (θ_0, every ``eval_every`` steps, the last
iterate) it measures the held-out harmful loss, the harm proxy f and the capability proxy g.

Attacks of the durability literature (Qi et al., ICLR 2025) vary optimizer, learning rate,
schedule, warmup, LoRA vs full fine-tuning, and mix harmless data into the harmful set
(``poison_ratio``); ``AttackConfig`` exposes each of them.

Determinism: the loop runs under ``torch.use_deterministic_algorithms(True)`` with torch's
global generator forked and seeded (the caller's random state is restored afterwards) and a
private ``torch.Generator`` for the data order, so the same configuration gives the same
trajectory bit for bit on the CPU. The probe and the evaluations consume no randomness, so
switching them on does not change the attack.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import torch
from torch import Tensor, nn

from empirical.datasets.data import Example, check_disjoint, load_examples
from empirical.engine.attack_config import AttackConfig as AttackConfig
from empirical.engine.attack_config import DeviceName, DtypeName, checked_device
from empirical.engine.attack_config import LoraSettings as LoraSettings
from empirical.engine.evaluator import Evaluator as Evaluator
from empirical.engine.evaluator import batches_of as batches_of
from empirical.engine.evaluator import default_proxies as default_proxies
from empirical.engine.evaluator import encode_on as encode_on
from empirical.engine.evaluator import mean_token_loss as mean_token_loss
from empirical.engine.schedules import make_scheduler, warmup_steps
from empirical.engine.training_forward import training_loss
from empirical.measurement.hvp import causal_lm_loss, evaluation_mode
from empirical.measurement.trajectory import (
    Environment,
    Evaluation,
    Timing,
    Trajectory,
    TrajectoryRecorder,
)
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from empirical.datasets.benchmark import Benchmark
    from empirical.measurement.proxies import (
        CapabilityProxy,
        HarmProxy,
    )

DTYPES: dict[DtypeName, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


EvaluationHook = Callable[[Evaluation], bool]
"""Called with each recorded evaluation; returning True stops the attack at that step."""

IterateHook = Callable[[int, Tensor], None]
"""Called with (s, θ_s) for the start point θ_0 and after every step: θ_s the trainable
parameters as the flat float32 vector the update norms are measured on (a fresh tensor the
loop does not modify). ``empirical.certify.capture.IterateCapture`` keeps them."""


@dataclass
class AttackOutcome:
    """An attack's trajectory and the attacked model (a copy; the caller's model is untouched)."""

    trajectory: Trajectory
    model: nn.Module
    eval_cpu_seconds: float = 0.0
    """Process CPU seconds of the evaluations (``Timing.eval_seconds`` is wall-clock)."""


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class AttackData:
    """The three data sets of an attack: what the attacker trains on, and what is measured."""

    attack: list[Example]
    evaluation: list[Example]
    reference: list[Example]


def mix_poison(
    harmful: Sequence[Example],
    harmless: Sequence[Example],
    poison_ratio: float,
    generator: torch.Generator,
) -> list[Example]:
    """All ``harmful`` examples plus ``round(n_h (1 − r) / r)`` harmless ones drawn without
    replacement, so that harmful examples make up the fraction ``r`` of the result.

    Raises:
        HftaInputError: no harmful examples, ``r`` outside (0, 1], or too few harmless ones.
    """
    if not harmful:
        raise HftaInputError("poison_ratio needs harmful (is_safe = false) examples in the data")
    if not 0.0 < poison_ratio <= 1.0:
        raise HftaInputError(f"poison_ratio must lie in (0, 1], got {poison_ratio}")
    wanted = round(len(harmful) * (1.0 - poison_ratio) / poison_ratio)
    if wanted > len(harmless):
        raise HftaInputError(
            f"poison_ratio {poison_ratio} needs {wanted} harmless examples, only "
            f"{len(harmless)} available"
        )
    chosen = torch.randperm(len(harmless), generator=generator)[:wanted].tolist()
    return [*harmful, *(harmless[i] for i in sorted(chosen))]


@functools.lru_cache(maxsize=2)
def _embedded_benchmark(seed: int) -> Benchmark:
    """The embedded benchmark, generated once per seed and process (it is immutable data)."""
    from empirical.datasets.benchmark import embedded_benchmark

    return embedded_benchmark(seed=seed)


def resolve_data(
    config: AttackConfig,
    *,
    data: Sequence[Example] | None = None,
    evaluation: Sequence[Example] | None = None,
    reference: Sequence[Example] | None = None,
) -> AttackData:
    """The attack, evaluation and reference sets: given, read from the config's paths, or the
    embedded benchmark's splits; then the poison mixing; then the disjointness check
    (attack ∩ evaluation = attack ∩ reference = ∅, ``DataOverlapError`` otherwise)."""

    def embedded() -> Benchmark:
        return _embedded_benchmark(config.benchmark_seed)

    def pick(given: Sequence[Example] | None, path: Path | None, split: str) -> list[Example]:
        if given is not None:
            examples = list(given)
        elif path is not None:
            examples = load_examples(path)
        else:
            examples = list(getattr(embedded(), split))
        if not examples:
            raise HftaInputError(f"the {split} data holds no examples")
        return examples

    attack = pick(data, config.data, "attack")
    if config.poison_ratio is not None:
        harmful = [e for e in attack if not e.is_safe]
        harmless = [e for e in attack if e.is_safe]
        if not harmless:
            harmless = [e for e in embedded().pretrain if e.is_safe]
        generator = torch.Generator().manual_seed(config.seed)
        attack = mix_poison(harmful, harmless, config.poison_ratio, generator)
    result = AttackData(
        attack=attack,
        evaluation=pick(evaluation, config.evaluation_data, "evaluation"),
        reference=pick(reference, config.reference_data, "reference"),
    )
    check_disjoint(attack=result.attack, evaluation=result.evaluation)
    check_disjoint(attack=result.attack, reference=result.reference)
    return result


class BatchStream:
    """Minibatches of a fixed size from pre-encoded tensors, in a seeded random order.

    The index stream is an endless concatenation of random permutations of the examples
    (a private ``torch.Generator``), cut into consecutive chunks of ``batch_size``, so every
    batch has the same size and every example is seen once per pass.
    """

    def __init__(
        self, tensors: Mapping[str, Tensor], batch_size: int, generator: torch.Generator
    ) -> None:
        self.tensors = dict(tensors)
        self.size = int(next(iter(self.tensors.values())).shape[0])
        self.batch_size = batch_size
        self.generator = generator
        self._pending: list[int] = []

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return self

    def __next__(self) -> dict[str, Tensor]:
        while len(self._pending) < self.batch_size:
            self._pending.extend(torch.randperm(self.size, generator=self.generator).tolist())
        chosen, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        device = next(iter(self.tensors.values())).device
        index = torch.tensor(chosen, dtype=torch.long, device=device)
        return {name: tensor.index_select(0, index) for name, tensor in self.tensors.items()}


# ---------------------------------------------------------------------- measurements
def flat_parameters(parameters: Sequence[Tensor]) -> Tensor:
    """The parameters as one float32 vector θ ∈ ℝᵈ (a copy)."""
    return torch.cat([p.detach().reshape(-1).float() for p in parameters])


class ParameterFlattener:
    """``flat_parameters`` for the same parameters at every step, without its per-tensor
    Python work: flat views of contiguous float32 parameters are made once (they follow
    the in-place optimizer updates) and each call is one ``torch.cat`` into a fresh
    tensor, equal to ``flat_parameters`` element for element (≈ 15 µs instead of ≈ 65 µs
    for the embedded model's 28 tensors, measured with ``time.process_time``). Other
    parameters (another dtype, non-contiguous) take ``flat_parameters``."""

    def __init__(self, parameters: Sequence[Tensor]) -> None:
        self.parameters = list(parameters)
        self.views: list[Tensor] | None = None
        if all(p.dtype == torch.float32 and p.is_contiguous() for p in self.parameters):
            self.views = [p.detach().view(-1) for p in self.parameters]

    def flat(self, out: Tensor | None = None) -> Tensor:
        """θ as a fresh float32 vector, or written into ``out`` (a float32 vector of θ's
        size that the caller owns: no allocation)."""
        if self.views is None:
            if out is None:
                return flat_parameters(self.parameters)
            return out.copy_(flat_parameters(self.parameters))
        return torch.cat(self.views) if out is None else torch.cat(self.views, out=out)

    __call__ = flat


#: a parameter moved into a shared flat buffer must start on a 64-byte boundary there, as
#: torch's CPU allocator aligns every tensor: 16 float32 elements
_FLAT_ALIGNMENT = 16


def share_storage(parameters: Sequence[nn.Parameter]) -> Tensor | None:
    """Move ``parameters`` into one flat float32 buffer, each a view of its slice in order,
    and return the buffer: θ as one vector that in-place optimizer updates keep current,
    equal to ``flat_parameters`` element for element without a copy (``separate_storage``
    undoes it).

    Only where every parameter is a contiguous float32 tensor on one device with a size
    that is a multiple of 16 elements: every view then starts on a 64-byte boundary, where
    torch's allocator put the tensor, so the kernels see the same memory layout and compute
    the same bits. Otherwise the parameters are left alone and ``None`` is returned.
    """
    device = parameters[0].device if parameters else None
    if not parameters or any(
        p.dtype != torch.float32
        or not p.is_contiguous()
        or p.numel() % _FLAT_ALIGNMENT
        or p.device != device
        for p in parameters
    ):
        return None
    flat = torch.empty(sum(p.numel() for p in parameters), device=device)
    offset = 0
    with torch.no_grad():
        for parameter in parameters:
            size = parameter.numel()
            view = flat[offset : offset + size].view_as(parameter)
            view.copy_(parameter)
            parameter.data = view
            offset += size
    return flat


def separate_storage(parameters: Sequence[nn.Parameter]) -> None:
    """Give each parameter storage of its own again (a copy of its values)."""
    with torch.no_grad():
        for parameter in parameters:
            parameter.data = parameter.data.clone()


@contextlib.contextmanager
def flat_storage(parameters: Sequence[nn.Parameter]) -> Iterator[Tensor | None]:
    """``share_storage`` inside (its buffer, or ``None``), ``separate_storage`` after: the
    model leaves with parameters of its own."""
    flat = share_storage(parameters)
    try:
        yield flat
    finally:
        if flat is not None:
            separate_storage(parameters)


# ---------------------------------------------------------------------- set-up
def make_optimizer(config: AttackConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """torch's SGD / Adam / AdamW for ``config`` (Adam and AdamW with the fused kernels: the
    same update rule, one kernel for all parameters, deterministic, the fastest on CPU too)."""
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return kind(
        parameters,
        lr=lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=True,
    )


def _apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    from empirical.engine.lora import resolve_target_modules

    # given names (checked against the model), or ("auto",): the architecture's defaults
    targets = resolve_target_modules(model, settings.target_modules)
    names = set(targets)
    targeted = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in names]
    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(targets),
        fan_in_fan_out=all(isinstance(m, Conv1D) for m in targeted),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise HftaInputError(f"LoRA could not be applied: {exc}") from None


def untie_head(model: nn.Module) -> nn.Module:
    """Head-only fine-tuning: the output head becomes its own trainable parameter (a copy of
    ``lm_head.weight``, so a head tied to the input embeddings is untied and
    ``config.tie_word_embeddings`` set False) and every other parameter is frozen; the logits
    at position p are then W h_p with the features h_p fixed (GPT-2's head has no bias; a
    bias, where there is one, stays frozen). Modifies ``model`` in place and returns it."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Linear):
        raise HftaInputError("head-only fine-tuning needs a model with a linear output head")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=True)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False
    return model


def _model_and_tokenizer(
    config: AttackConfig,
    model: nn.Module | None,
    tokenizer: PreTrainedTokenizerBase | None,
    device: torch.device,
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    if (model is None) != (tokenizer is None):
        raise HftaInputError("give both model and tokenizer, or neither")
    if model is None or tokenizer is None:
        from empirical.models.model import load_model

        loaded, tokenizer = load_model(config.model, device=str(device), dtype=DTYPES[config.dtype])
        model = loaded
    else:
        model = copy.deepcopy(model).to(device=device, dtype=DTYPES[config.dtype])
    if tokenizer.pad_token_id is None:
        raise HftaInputError("tokenizer has no pad token (set tokenizer.pad_token)")
    return model, tokenizer


def torch_device(name: DeviceName) -> torch.device:
    """The torch device of ``name`` (``attack_config.checked_device``: refused where it
    cannot run, before anything is loaded)."""
    return torch.device(checked_device(name))


def _max_length(config: AttackConfig, model: nn.Module) -> int:
    from empirical.measurement.proxies import context_length

    limit = context_length(model)
    if config.max_length is None:
        return limit
    if config.max_length > limit:
        raise HftaInputError(
            f"max_length {config.max_length} exceeds the model's context of {limit} tokens"
        )
    return config.max_length


@contextlib.contextmanager
def deterministic(seed: int, device: torch.device) -> Iterator[None]:
    """Seeded, deterministic torch inside; the caller's random state and flags restored after."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _set_deterministic(True)
        try:
            yield
        finally:
            _set_deterministic(previous, warn_only=previous_warn)


def _set_deterministic(mode: bool, *, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms`` for eager execution.

    The public function also sets ``torch._inductor.config.deterministic``, and importing that
    module imports inductor and dynamo: ≈ 0.9 s in every fresh process (cProfile of a first
    attack), paid by each worker process and by every command that attacks. The attack runs
    eagerly, where only the flag set by ``torch._C._set_deterministic_algorithms`` matters,
    so that is what is set, unless inductor is loaded already (then the public function, at
    no import cost, keeps its config in step) or the private setter is missing.
    """
    import sys

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def without_kv_cache(model: nn.Module) -> Iterator[None]:
    """The model's ``config.use_cache`` off inside, restored after.

    A transformers decoder called with ``use_cache`` builds a key/value cache object on every
    forward pass, which a loss on whole sequences never reads: training and teacher-forced
    scoring give the same numbers bit for bit without it (checked in the tests) and skip
    that work (≈ 7% of a training step of the embedded model, measured with
    ``benchmarks/engine_bench.py``). Models without such a config are left as they are.
    """
    config = getattr(model, "config", None)
    previous = getattr(config, "use_cache", None)
    if config is None or not isinstance(previous, bool):
        yield
        return
    config.use_cache = False
    try:
        yield
    finally:
        config.use_cache = previous


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def select_probe(train: dict[str, Tensor], config: AttackConfig) -> dict[str, Tensor]:
    """The fixed probe batch: ``config.probe_size`` rows of the encoded attack set, chosen
    with seed ``config.seed + 1`` (independent of the training order)."""
    chooser = torch.Generator().manual_seed(config.seed + 1)
    rows = next(iter(train.values())).shape[0]
    chosen = torch.randperm(rows, generator=chooser)[: config.probe_size]
    index = chosen.to(next(iter(train.values())).device)
    return {k: v.index_select(0, index) for k, v in train.items()}


# ---------------------------------------------------------------------- the attack
class AttackInputs(TypedDict, total=False):
    """What an attack may be given besides its configuration: the one keyword signature of
    ``attack``, ``run_attack`` and ``empirical.certify.attack_and_measure`` (``**inputs``).

    ``model``/``tokenizer``: ``None`` loads ``config.model`` (the embedded model by default);
    a given model is deep-copied first. ``data``/``evaluation``/``reference`` override the
    config's data (see ``resolve_data``). ``harm_proxy``/``capability_proxy`` default to
    ``default_proxies(config.harm_proxy)``.
    """

    model: nn.Module | None
    tokenizer: PreTrainedTokenizerBase | None
    data: Sequence[Example] | None
    evaluation: Sequence[Example] | None
    reference: Sequence[Example] | None
    harm_proxy: HarmProxy | None
    capability_proxy: CapabilityProxy | None


def run_attack(
    config: AttackConfig,
    *,
    on_evaluation: EvaluationHook | None = None,
    **inputs: Unpack[AttackInputs],
) -> Trajectory:
    """Run the attack of ``config`` and return its measured trajectory (see ``attack``)."""
    return attack(config, on_evaluation=on_evaluation, **inputs).trajectory


def attack(
    config: AttackConfig,
    *,
    on_evaluation: EvaluationHook | None = None,
    on_iterate: IterateHook | None = None,
    **inputs: Unpack[AttackInputs],
) -> AttackOutcome:
    """Fine-tune on harmful data for ``config.budget_steps`` steps, measuring every step.

    ``inputs``: the model, tokenizer, data and proxies to use instead of the config's
    (``AttackInputs``). ``on_evaluation`` is called with every recorded ``Evaluation``; when
    it returns True the attack stops there (``Trajectory.stopped_early``; a hyperparameter
    search prunes with it). ``on_iterate`` is called with every iterate (s, θ_s)
    (``IterateHook``).

    Raises:
        HftaInputError: unusable model, tokenizer, data or device (one clear message).
    """
    started = time.perf_counter()
    device = torch_device(config.device)
    model, tokenizer = inputs.get("model"), inputs.get("tokenizer")
    harm_proxy, capability_proxy = inputs.get("harm_proxy"), inputs.get("capability_proxy")
    splits = resolve_data(
        config,
        data=inputs.get("data"),
        evaluation=inputs.get("evaluation"),
        reference=inputs.get("reference"),
    )
    if harm_proxy is None or capability_proxy is None:
        default_harm, default_capability = default_proxies(config.harm_proxy)
        harm_proxy = harm_proxy or default_harm
        capability_proxy = capability_proxy or default_capability
    with deterministic(config.seed, device), contextlib.ExitStack() as stack:
        model, tokenizer = _model_and_tokenizer(config, model, tokenizer, device)
        if config.method == "lora":
            model = _apply_lora(model, config.lora)
        elif config.method == "head":
            model = untie_head(model)
        parameters = [p for p in model.parameters() if p.requires_grad]
        if not parameters:
            raise HftaInputError("the model has no trainable parameters")
        max_length = _max_length(config, model)
        train = encode_on(tokenizer, splits.attack, max_length, device)
        evaluator = Evaluator(
            tokenizer,
            splits.evaluation,
            splits.reference,
            harm_proxy=harm_proxy,
            capability_proxy=capability_proxy,
            max_length=max_length,
            device=device,
        )
        probe_batch = select_probe(train, config) if config.probing else None
        recorder = TrajectoryRecorder(
            source="attack",
            config=_provenance(config, splits, max_length, harm_proxy, capability_proxy),
            budget_steps=config.budget_steps,
            trainable_parameters=sum(p.numel() for p in parameters),
            probe=config.probing,
            curvature=config.record_curvature,
        )
        flat = stack.enter_context(flat_storage(parameters))
        loop = _AttackLoop(
            config=config,
            model=model,
            parameters=parameters,
            stream=BatchStream(
                train, config.batch_size, torch.Generator().manual_seed(config.seed)
            ),
            probe_batch=probe_batch,
            evaluator=evaluator,
            recorder=recorder,
            on_evaluation=on_evaluation,
            on_iterate=on_iterate,
            flat=flat,
        )
        with without_kv_cache(model):
            loop.run()
    model.eval()
    wall = time.perf_counter() - started
    trajectory = recorder.finish(
        timing=Timing(
            wall_seconds=wall,
            train_seconds=loop.train_seconds,
            eval_seconds=loop.eval_seconds,
            train_cpu_seconds=loop.train_cpu_seconds,
        ),
        environment=Environment.current(str(device), config.dtype),
        capability_higher_is_better=capability_proxy.higher_is_better,
        stopped_early=loop.stopped_early,
    )
    return AttackOutcome(trajectory=trajectory, model=model, eval_cpu_seconds=loop.eval_cpu_seconds)


def _provenance(
    config: AttackConfig,
    splits: AttackData,
    max_length: int,
    harm_proxy: HarmProxy,
    capability_proxy: CapabilityProxy,
) -> dict[str, Any]:
    """The config as JSON plus what it resolved to (data sizes, warmup steps, proxies)."""
    record = config.model_dump(mode="json")
    record["resolved"] = {
        "attack_examples": len(splits.attack),
        "harmful_attack_examples": sum(not e.is_safe for e in splits.attack),
        "evaluation_examples": len(splits.evaluation),
        "reference_examples": len(splits.reference),
        "max_length": max_length,
        "warmup_steps": warmup_steps(config.warmup_fraction, config.budget_steps),
        "harm_proxy": getattr(harm_proxy, "name", type(harm_proxy).__name__),
        "capability_proxy": getattr(capability_proxy, "name", type(capability_proxy).__name__),
    }
    return record


class _AttackLoop:
    """The step loop of ``attack`` (state shared between steps kept on the instance)."""

    def __init__(
        self,
        *,
        config: AttackConfig,
        model: nn.Module,
        parameters: list[nn.Parameter],
        stream: BatchStream,
        probe_batch: dict[str, Tensor] | None,
        evaluator: Evaluator,
        recorder: TrajectoryRecorder,
        on_evaluation: EvaluationHook | None = None,
        on_iterate: IterateHook | None = None,
        flat: Tensor | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.parameters = parameters
        self.flat = flat  # the parameters' shared storage (``share_storage``), if they have one
        self.stream = stream
        self.probe_batch = probe_batch
        self.evaluator = evaluator
        self.recorder = recorder
        self.on_evaluation = on_evaluation
        self.on_iterate = on_iterate
        self.stopped_early = False
        self.optimizer = make_optimizer(config, parameters)
        self.scheduler = make_scheduler(
            self.optimizer,
            config.schedule,
            warmup_fraction=config.warmup_fraction,
            total_steps=config.budget_steps,
            decay=config.decay,
        )
        self.flatten = ParameterFlattener(parameters)
        self.start = self.flatten()  # θ_0: never written to (a hook may keep it)
        # θ_s, a spare buffer (for θ_{s+1}, or the differences), the norms (and ⟨∇L_P, Δ_s⟩)
        # in one small vector: made once, no allocation per step (``_measure_update``)
        self.previous = self.start.clone()
        self._spare = torch.empty_like(self.start)
        self._measured = torch.empty(3 if probe_batch is not None else 2, device=self.start.device)
        self.probe_gradient: Tensor | None = None
        self.train_seconds = 0.0
        self.train_cpu_seconds = 0.0
        self.eval_seconds = 0.0
        self.eval_cpu_seconds = 0.0

    # -- measurements at an iterate
    def _probe(self) -> tuple[float, float]:
        """L_P(θ) and ‖∇L_P(θ)‖ on the probe batch (dropout off); keeps ∇L_P(θ) for ⟨·, Δ⟩."""
        assert self.probe_batch is not None
        with evaluation_mode(self.model), torch.enable_grad():
            loss = causal_lm_loss(self.model, self.probe_batch)
            grads = torch.autograd.grad(loss, self.parameters, allow_unused=True)
        self.probe_gradient = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                for g, p in zip(grads, self.parameters, strict=True)
            ]
        )
        values = torch.stack([loss.detach().float(), self.probe_gradient.norm()]).tolist()
        return values[0], values[1]

    def _evaluate(self, step: int) -> bool:
        """Record an evaluation at iterate ``step``; False when the model diverged or the
        ``on_evaluation`` hook asked to stop."""
        wall, cpu = time.perf_counter(), time.process_time()
        harmful_loss, harm, capability = self.evaluator(self.model)
        self.eval_seconds += time.perf_counter() - wall
        self.eval_cpu_seconds += time.process_time() - cpu
        if harmful_loss is None:
            self.recorder.diverge(step, f"held-out harmful loss is not finite at step {step}")
            return False
        self.recorder.evaluation(step, harmful_loss=harmful_loss, harm=harm, capability=capability)
        hook = self.on_evaluation
        if hook is not None and hook(self.recorder.evaluations[-1]):
            # a request to stop at the last iterate changes nothing
            self.stopped_early = step < self.config.budget_steps
            return False
        return True

    def _iterate(self, step: int, distance: float) -> bool:
        """Record iterate θ_step (probe included); False when the probe found divergence."""
        probe_loss = probe_norm = None
        if self.probe_batch is not None:
            probe_loss, probe_norm = self._probe()
            if not _finite(probe_loss, probe_norm):
                self.recorder.iterate(distance)
                self.recorder.diverge(step, f"probe loss or gradient not finite at step {step}")
                return False
        self.recorder.iterate(distance, probe_loss=probe_loss, probe_grad_norm=probe_norm)
        return True

    # -- one step
    def _gradient(self) -> tuple[Tensor, Tensor]:
        """Accumulate ∇L over ``grad_accumulation`` minibatches; (mean loss, norm pre-clip),
        the gradient not clipped yet (``_clip``). The loss is ``training_loss``: the model's
        own, by a lean forward pass where that gives the same bits (checked)."""
        if not self.model.training:  # after an evaluation or the probe (train() walks
            self.model.train()  # every module: not free at every step)
        accumulation = self.config.grad_accumulation
        if accumulation == 1:  # no division by 1 in the graph, no running sum: the same bits
            loss = training_loss(self.model, next(self.stream))
            torch.autograd.backward(loss)
            return loss.detach(), self._norm()
        total = torch.zeros((), device=self.start.device)
        for _ in range(accumulation):
            loss = training_loss(self.model, next(self.stream), divisor=accumulation)
            torch.autograd.backward(loss / accumulation)
            total = total + loss.detach().float()
        return total / accumulation, self._norm()

    def _norm(self) -> Tensor:
        """‖∇L‖ before clipping (``clip_grad_norm_``'s own first half)."""
        grads = [p.grad for p in self.parameters if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads, foreach=True)

    def _clip(self, norm: Tensor, norm_value: float) -> None:
        """``clip_grad_norm_``'s second half: the gradient times min(1, c / (‖∇L‖ + 1e-6)).
        Where that factor is 1 for certain (‖∇L‖ clearly below c) the multiplication is
        skipped: x · 1.0 = x, so the gradient is the same bit for bit, without a pass over
        it (two thirds of the default attack's steps)."""
        limit = self.config.max_grad_norm
        if limit is None or norm_value + 1e-6 < limit * (1.0 - 1e-4):
            return
        torch.nn.utils.clip_grads_with_norm_(self.parameters, limit, norm, foreach=True)

    def _step(self, step: int) -> bool:
        """Step ``step``: θ_s → θ_{s+1}, recorded; False when the attack diverged."""
        rate = float(self.optimizer.param_groups[0]["lr"])
        loss, norm = self._gradient()
        loss_value, norm_value = loss.item(), norm.item()  # as float32 → float, no stack
        if not _finite(loss_value, norm_value):
            what = "training loss" if not math.isfinite(loss_value) else "gradient norm"
            self.recorder.diverge(step, f"{what} is not finite at step {step}")
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self._clip(norm, norm_value)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        values = self._measure_update(step)
        if not _finite(*values):
            self.recorder.step(
                train_loss=loss_value, learning_rate=rate, grad_norm=norm_value, update_norm=None
            )
            self.recorder.iterate(None)
            self.recorder.diverge(step + 1, f"parameters are not finite after step {step}")
            return False
        self.recorder.step(
            train_loss=loss_value,
            learning_rate=rate,
            grad_norm=norm_value,
            update_norm=values[0],
            probe_directional_derivative=values[2] if len(values) > 2 else None,
        )
        return self._iterate(step + 1, values[1])

    def _measure_update(self, step: int) -> list[float]:
        """[‖Δ_s‖, ‖θ_{s+1} − θ_0‖] (+ ⟨∇L_P(θ_s), Δ_s⟩ with the probe) after step ``step``,
        over the trainable parameters as one float32 vector, read back together (the
        recording's whole cost per step).

        The cost is cache traffic: the step's forward, backward and optimizer evict these
        vectors of θ's size between steps. Δ_s = θ_{s+1} − θ_s is written over θ_s (not
        needed after it) and reduced, then θ_{s+1} − θ_0 into the same buffer. Where the
        parameters share one flat buffer (``share_storage``, what ``attack`` does where they
        fit) θ_{s+1} is that buffer, and it is copied over θ_s at the end, while both are
        still in the cache: two vectors come from memory (θ_s, θ_0). Otherwise θ_{s+1} is
        flattened into the spare buffer, which takes θ_s's role at the next step. With a
        hook, θ_{s+1} is a fresh tensor and the spare buffer takes the differences. Every
        result is written in place by the kernel that would allocate it: the same bits
        (what each change saved: ``benchmarks/engine_bench.py``)."""
        measured = self._measured
        if self.on_iterate is not None:
            current = self.flatten()  # the hook may keep it (and θ_s): a fresh tensor
            self.on_iterate(step + 1, current)
            scratch = self._spare
        elif self.flat is not None:  # θ_{s+1} is the parameters' own storage: no copy
            current, scratch = self.flat, self.previous
        else:
            current = self.flatten(out=self._spare)
            scratch = self.previous
        delta = torch.sub(current, self.previous, out=scratch)
        torch.linalg.vector_norm(delta, out=measured[0])
        if self.probe_gradient is not None:
            torch.dot(self.probe_gradient, delta, out=measured[2])
        offset = torch.sub(current, self.start, out=scratch)
        torch.linalg.vector_norm(offset, out=measured[1])
        if current is self.flat:
            self.previous.copy_(current)  # θ_{s+1} over the differences, while both are hot
        else:
            if scratch is self.previous:
                self._spare = scratch
            self.previous = current
        values: list[float] = measured.tolist()
        return values

    def _timed(self, work: Callable[[], bool]) -> bool:
        """Run ``work``, adding its wall-clock and CPU seconds to the training time."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return work()
        finally:
            self.train_seconds += time.perf_counter() - wall
            self.train_cpu_seconds += time.process_time() - cpu

    def run(self) -> None:
        """θ_0 (probe, evaluation), then every step until the budget or a divergence."""
        budget = self.config.budget_steps
        if self.on_iterate is not None:
            self.on_iterate(0, self.start)
        alive = self._timed(lambda: self._iterate(0, 0.0)) and self._evaluate(0)
        step = 0
        while alive and step < budget:
            alive = self._timed(functools.partial(self._step, step))
            step += 1
            if alive and (step % self.config.eval_every == 0 or step == budget):
                alive = self._evaluate(step)
