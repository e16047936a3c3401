"""Figures for the attack engine (``empirical.engine.attack``) on the embedded model, one CPU
thread.

* ``attack_steps_per_second``: training steps per second of the default attack (AdamW,
  lr 3e-4, batch 16, cosine with 10% warmup, 200 steps, an evaluation every 20; evaluations
  excluded), and ``attack_wall_seconds`` for the whole run, evaluations and set-up included,
  with ``attack_eval_seconds`` and ``attack_eval_fraction`` = eval / wall (target ≤ 0.2);
  ``attack_cpu_seconds``, ``attack_eval_cpu_seconds`` and ``attack_eval_cpu_fraction``: the
  same in process CPU seconds (what a shared machine does not inflate).
* ``evaluation_cpu_ms``: CPU milliseconds of one evaluation's teacher-forced scoring (the
  300 evaluation and 400 reference examples, ``score_packed``), and
  ``evaluation_vs_per_batch_ratio`` its ratio to the per-batch passes it replaced
  (``per_batch_scores``), ``EVALUATION_PAIRS`` interleaved pairs, median with min and max.
* ``instrumentation_overhead_ratio``: CPU time of the loop's recorded steps
  (``_AttackLoop._step``: loss, rate, gradient norm, update norm, distance; no probe, no
  evaluation) over a bare torch loop doing the same forward passes (both the lean pass of
  ``empirical.engine.training_forward``), optimizer, schedule, clipping and batches with
  nothing recorded (``bare_loop``); target ≤ 1.02. The two loops
  run in lockstep (``lockstep``: one step of each in turn, the order alternating, each step
  timed), ``LOCKSTEP_STEPS`` steps, ``PAIRS`` times: the median of the per-run ratios with
  ``..._min`` and ``..._max``. ``instrumentation_control_ratio`` is the same measurement of
  the bare loop against itself: the noise floor (a ratio the method reports where there is
  no difference).
* ``lean_forward_speedup``: CPU time of the model's own forward and backward pass
  (``causal_lm_loss``) over the lean pass the attack uses (``training_forward.training_loss``,
  the same loss and gradients bit for bit), on the default attack's batches,
  ``LEAN_PAIRS`` interleaved pairs of ``LEAN_REPEATS`` passes: median with min and max;
  ``own_forward_backward_cpu_ms`` and ``lean_forward_backward_cpu_ms`` the medians per pass.
* ``vs_hf_trainer_speed_ratio``: our steps per second over ``transformers.Trainer``'s on the
  same model, data, batch size, optimizer, schedule, clipping and number of steps (the
  Trainer keeps its defaults otherwise: fused AdamW on the CPU, its data loader and
  collation). The two run in lockstep (``trainer_lockstep``: one of our recorded steps
  inside every Trainer step, from a ``TrainerCallback``), ``STEPS`` steps of which the
  first 5 are not counted, ``TRAINER_PAIRS`` times: median with min and max; aim ≥ 1.5
  (not reachable with eager kernels: see the end of this docstring).
  (Whole runs back to back, the method before, gave 0.90–1.26 in 5 pairs; in lockstep
  the five ratios of one run spread over 1.12–1.16.)

The ratios compare process CPU seconds (one torch thread), not wall-clock seconds: on a
machine shared with other jobs the wall clock mostly measures waiting for a core. Whole runs
back to back (the method before the lockstep) gave overhead ratios from 0.92 to 1.21 in one
set of 11 pairs on the shared 2-core machine: too coarse for a 2% target. In lockstep,
neighbouring steps see the same machine; the control ratio stays within ±1.5%.

Where an evaluation's time goes (``python -m benchmarks.profile_step evaluation``:
torch.profiler, self CPU time of 5 evaluations): matrix products 27%, the tanh-GELU's
``tanh`` 16% and the element-wise ``mul``/``add``/``pow`` of GELU, residuals and attention
33%, copies (the attention's ``contiguous``, the mask) 9%, softmax 4%, layer norm 4%,
cross-entropy 2%, arg-max and compare 0.6%; tokenizing and caching the sets is paid once
(the first evaluation 165 ms CPU, later ones 109 ms) and the output head over the 57-token
vocabulary is ≈ 1% (3.6% of the products' arithmetic). An evaluation is arithmetic on
≈ 11,300 tokens (300 × 17 + 400 × 13–17), not Python: the sets were already cached, scored
under ``torch.inference_mode`` and shared between the held-out loss and the harm proxy.
What packing (``pack_for_scoring``) adds: both sets in one series of passes, rows grouped by
the length their batch was padded to (sorting rows by length changes their numbers: the
attention's masked softmax runs over the padded length, so a 13-token row padded to 17 gets
other bits), the last input column dropped (6% of the tokens), passes of 2048 tokens (larger
passes leave the cache: 16,384-token passes took 2.1× the CPU time). Its gain on this CPU is
within the machine's noise (0.84, 0.97 and 1.34 times the per-batch passes' CPU time,
medians of three sets of 7 pairs at 2048 tokens), and the numbers are those of the per-batch
passes bit for bit (tests/empirical/test_packed_scoring.py; checked once more: every
trajectory column of the default attack, a 60-step sampled-harm attack and a probed SGD
attack equal to the values recorded before the change). So the evaluation share stays near
0.4 of the default attack (11 evaluations × ≈ 100 ms against 200 steps × ≈ 7–9 ms): ≤ 0.2
needs about 2.5× less arithmetic per evaluation, which only computing fewer positions gives
(the prompt prefix shared by all rows once, the last layer's output projection, MLP and head
only at the 6 scored positions of 16): by the token counts both together would leave ≈ 0.55
of the arithmetic, a share near 0.27 (an estimate, not measured); model surgery not
attempted here, each step of which would have to prove its bits. The fused
``gelu(approximate="tanh")`` is not an option: it differs from the model's ``gelu_new`` in
0.9% of 10⁶ random inputs (by ≤ 4.8e-7).

The first evaluation (measured later, with the sliced, prefix-sharing passes; process CPU,
one thread, interleaved in one process, medians): encoding both sets took 16 ms against 30
(each set tokenized in two calls, not three per batch), packing 2.9 against 8.1 ms (the
shared prefixes counted column by column), the default attack's first evaluation in a fresh
process 77 against 95 ms (9 rounds; later ones 44-47 ms either way). A later attack in the
same process takes the sets and θ₀'s scores from ``empirical.engine.evaluation_cache``: its
first evaluation 2.2 against 80 ms, its evaluation share 0.24 against 0.28. The steady
evaluations are the scoring's arithmetic (no saving ≥ 5% found that keeps the bits).

Where a step's time goes (``python -m benchmarks.profile_step``: cProfile over 150 steps of
the default attack, measured before the changes below, on the shared machine, so the shares,
not the milliseconds, are the finding): the forward pass 44%, the backward pass 36%, the
fused AdamW step 5.5%, clipping 4.4%, zero_grad 1%, the next minibatch 0.8%, flattening θ
0.4%, the rest (two norms, the host reads, the recorder, the loop's Python) 7.5%, which
cProfile inflates. Forward and backward are the model's own operators (matrix products and
the tanh-GELU's element-wise chain on 16×17 tokens). Removed from the loop over time:
``model.train()`` at every step, ``flat_parameters``'s per-tensor Python work
(``attack.ParameterFlattener``), the key/value cache in training
(``attack.without_kv_cache``, ≈ 7% of a step); in this round, measured in lockstep: the
division by 1 and the running sum of a single-minibatch step, the clipping multiplication
where its factor is 1 (the gradient's norm clearly below the limit: x · 1.0 = x, two thirds
of the default attack's steps), a fresh θ vector and a second difference buffer per step
(two iterate buffers in turn, Δ_s and θ_{s+1} − θ_0 in one buffer). The overhead went from
1.035–1.037 to 1.023–1.030 (controls 1.001–1.010); the profile after them: forward 44.7%,
backward 38.1%, AdamW 5.7%, the gradient's norm 2.0% and its clipping 0.8% (4.4% together
before), zero_grad 1.2%, the next minibatch 0.9%, flattening θ 0.4%, the rest 6.0%. What is
left is mostly the recording itself, which must produce the same bits: θ_{s+1} copied into
one vector and two differences and two norms over its 105,792 floats (≈ 100 µs of a 7–10 ms
step when measured alone, plus what their 1.7 MB of traffic evicts from the cache: dropping
them, before the clipping change, left 1.009–1.014); the host reads cost ≈ 2 µs each on the
CPU (no device to synchronise with).

``transformers.Trainer`` against our loop (``python -m benchmarks.profile_step trainer``,
cProfile of 150 Trainer steps, shares of its epoch loop): forward 37% and backward 31% (the
same model code as ours), the optimizer and scheduler step 8.7% (accelerate's optimizer
wrapper), clipping 6.3% (accelerate's wrapper walks ``named_parameters`` at every step),
fetching the batch 3.9% (its data loader, collation and the count of supervised tokens),
``floating_point_ops`` 3.7% (``num_parameters`` walks every module at every step, for a
logged FLOP count), ``is_lomo_available`` 2.7% (an ``importlib`` lookup at every step), the
rest callbacks and bookkeeping. These are the Trainer's extra ≈ 10–15%; the steps themselves
are the same forward and backward, so a loop running the same eager model code cannot be
1.5× faster than the Trainer: the ratio is 1.1–1.2 here. Faster than eager takes a compiler:
``torch.compile`` of the model (``python -m benchmarks.profile_step compile``) ran the bare
loop's steady-state steps 1.2–1.4× faster (7.0–7.8 ms against 9.2–10.1 ms CPU per step, two
runs), for a first step of 8.9 s process CPU and 140 s wall with a cold compile cache on the
loaded machine (inductor compiles C++ in child processes, which the process CPU time does
not count) and 2.3 s CPU, 14 s wall with the cache an earlier run left, with losses drifting
from eager by up to 1.9e-6 in 100 steps (not the same bits). With it our loop would reach ≈
1.4–1.6× the Trainer, for a compile cost of 10 to 100 times the default attack's 200 steps
(≈ 1.5 s); it is not an option of the loop (``AttackConfig`` would carry it, and the
recorded numbers would no longer be eager PyTorch's).

Issue 16, the recording's cost and the Trainer ratio (``python -m benchmarks.profile_step
breakdown``: the recorded loop, the bare loop and the Trainer in lockstep, phases timed with
process CPU time; measured on the 2-core machine shared with four other jobs, load average
4–6, so the CPU times, not the wall times, are the figures). CPU ms per step, 100 steps:

    phase        ours   bare   Trainer
    forward      4.19   4.23   4.33
    backward     3.88   3.95   3.89
    optimizer    0.57   0.55   0.98    (step, schedule, zero_grad; accelerate's wrappers)
    clipping     0.38   0.46   0.62    (ours skips the multiplication by 1)
    batch        0.12   0.11   0.34
    recording    0.22   —      —       (differences, norms, read back)
    rest         0.25   0.17   0.91    (Python, host reads; the Trainer's bookkeeping)
    step         9.59   9.47  11.07

The recording was all of the overhead: with it replaced by constants the loop ran at
1.001× the bare loop (median of 5 lockstep runs), with it 1.027×. In situ it costs 3–6×
what the same kernels cost in a warm micro-benchmark (≈ 280 µs against 80 µs), because
the step's forward, backward and optimizer evict its vectors of 105,792 floats from the
cache between steps (process CPU time per kernel in situ: flattening θ 82–94 µs, the first
difference 74–88, its norm 47–55 though its input was just written). So what was cut is
cache traffic, every kernel kept (the same bits): (1) Δ_s written over θ_s instead of into
a fourth buffer (three vectors of θ's size, −11% of the recording's CPU time in situ,
median of 5 lockstep runs, 0.88–0.92); (2) the trainable parameters moved into one flat
buffer for the attack (``attack.share_storage``, each parameter a 64-byte-aligned view;
released after), so θ_{s+1} *is* that buffer: no flattening copy, and θ_s is updated by
one copy between two vectors still in the cache (a further −21%, 0.69–0.83, 5 runs; the
bare loop with flat storage runs at 1.002× itself, 0.99–1.03: the storage alone changes
no speed); (3) the norms written in place into one small vector read back once, the
loss and gradient norm read with ``item`` (no ``stack``). The overhead, 7 lockstep runs of
200 steps per set, all on the loaded machine: 1.032 (1.026–1.042, control 1.006) before
(1) and (2); after them 1.015 (1.007–1.025, control 1.003), 1.021 (1.006–1.029, control
1.003; this module's ``run``) and 1.013 (1.003–1.025, control 1.010) in three sets: at
the 2% target, within the method's noise of it. Every trajectory column of a 60-step default
attack, a probed and curvature-recording clipped-SGD attack, a head-only attack and a
gradient-accumulation attack is the same bit for bit as before, and
tests/empirical/test_engine_recording.py checks the recorded norms against a plain
recomputation (exactly, and within float32 rounding of float64). The Trainer monitor
(``empirical.engine.monitor``) measures the same way now (``ParameterFlattener``, three
buffers, no allocation): its ``on_step_end`` went from ≈ 270–340 µs to ≈ 170–220 µs CPU
per step (3 runs of 200 Trainer steps, both monitors on the same run: the same numbers).
Left as they are, measured: the fused AdamW is the fastest on this CPU (the foreach
implementation 1.07× slower per step, the per-tensor loop 1.08×, 3 lockstep runs each) and
changes the numbers (75 steps: 49 of 75 losses differ, by ≤ 4.8e-7, and the final
held-out loss by 5e-8); ``zero_grad(set_to_none=True)`` costs ≈ 10 µs against 1.5 µs for
setting the 28 gradients to ``None`` by hand (0.1% of a step); host reads cost ≈ 1 µs on
the CPU, where nothing waits for a device (none to batch or defer).

The Trainer: the ratio was 1.14 (1.12–1.16, 5 lockstep runs of 100 steps) with the
model's own forward pass. The step above needs ≤ 7.38 ms for 1.5×, less than that forward
and backward alone (8.06 ms, 84% of our step; the Trainer's are the same model code, 8.22
ms): removing all of ours beyond them would give 11.07 / 8.06 = 1.37. Since then the loop's
forward is a lean functional pass with the same operations in the same order
(``empirical.engine.training_forward``: the same loss and gradients bit for bit, checked at
each kind of batch's first use; every recorded column of the attacks above unchanged). It
leaves out the model's module calls, mask factory and output records, not arithmetic: the
forward 1.18× and forward plus backward 1.10–1.14× cheaper (``lean_forward_speedup``). The
breakdown with it (100 steps, same method, machine shared with two other jobs), CPU ms per
step:

    phase        ours   bare   Trainer
    forward      2.91   2.95   3.55
    backward     3.22   3.24   3.21    (the same backward graph)
    optimizer    0.48   0.47   0.79
    clipping     0.31   0.38   0.52
    batch        0.10   0.10   0.29
    recording    0.19   —      —
    rest         0.18   0.11   0.74
    step         7.39   7.26   9.10

and the ratio 1.239 (1.233–1.272, this module's ``run``, 5 lockstep runs; 1.217, 1.211–1.235, in
a later ``make bench`` on the quiet machine). Forward and
backward are 6.13 of our 7.39 ms: with nothing else at all the ratio would be 9.10 / 6.13 =
1.48, so 1.5× is out of reach for a loop that computes what the model computes with eager
kernels. The backward pass is the model's own graph; making it cheaper means other kernels
(a fused GELU, a compiler) and other bits. Only a compiler reaches 1.5× (``torch.compile``,
above: its own first-step cost and other bits).

Figures are printed (``python -m benchmarks engine_bench``), never asserted in tests.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from empirical.datasets.data import Example
from empirical.datasets.text import IGNORE_INDEX
from empirical.engine.attack import (
    DTYPES,
    AttackConfig,
    BatchStream,
    Evaluator,
    _apply_lora,
    _AttackLoop,
    attack,
    default_proxies,
    deterministic,
    encode_on,
    make_optimizer,
    resolve_data,
    run_attack,
    share_storage,
    untie_head,
    without_kv_cache,
)
from empirical.engine.schedules import make_scheduler
from empirical.engine.training_forward import training_loss
from empirical.measurement.hvp import causal_lm_loss
from empirical.measurement.proxies import (
    EncodedSet,
    TeacherForced,
    context_length,
    encode_for_scoring,
    pack_for_scoring,
    score_packed,
)
from empirical.measurement.trajectory import TrajectoryRecorder
from empirical.models.model import load_model

STEPS = 100
PAIRS = 7
LOCKSTEP_STEPS = 200
TRAINER_PAIRS = 5
EVALUATION_PAIRS = 7
LEAN_PAIRS = 15
LEAN_REPEATS = 40

Step = Callable[[], None]


def plain_parts(
    config: AttackConfig,
    model: nn.Module,
    tokenizer: Any,
    data: Sequence[Example] | None = None,
) -> tuple[nn.Module, list[nn.Parameter], BatchStream, torch.optim.Optimizer, Any]:
    """What a plain training loop of ``config`` starts from, built as
    ``empirical.engine.attack`` builds it: a copy of ``model`` on the config's device and
    dtype (LoRA adapters or an untied head where the config's method says so), its trainable
    parameters, the batch stream of ``data`` (default: the config's attack set; seed
    ``config.seed``), the optimizer and the rate schedule. Call inside ``deterministic``."""
    device = torch.device(config.device)
    examples = resolve_data(config).attack if data is None else list(data)
    model = copy.deepcopy(model).to(device=device, dtype=DTYPES[config.dtype])
    if config.method == "lora":
        model = _apply_lora(model, config.lora)
    elif config.method == "head":
        model = untie_head(model)
    parameters = [p for p in model.parameters() if p.requires_grad]
    stream = BatchStream(
        encode_on(tokenizer, examples, context_length(model), device),
        config.batch_size,
        torch.Generator().manual_seed(config.seed),
    )
    optimizer = make_optimizer(config, parameters)
    scheduler = make_scheduler(
        optimizer, config.schedule, warmup_fraction=config.warmup_fraction,
        total_steps=config.budget_steps, decay=config.decay,
    )
    return model, parameters, stream, optimizer, scheduler


def bare_loop(
    config: AttackConfig, model: nn.Module, tokenizer: Any, data: Sequence[Example] | None = None
) -> tuple[nn.Module, Step]:
    """The attack of ``run_attack`` with nothing recorded, one step per call (on ``data``,
    default the config's attack set).

    Same data order, forward pass (``training_loss``: the lean pass where it is the model's
    own), loss, optimizer, schedule and clipping as ``empirical.engine.attack``'s loop; no
    loss read back, no norms, no parameter copy. Call inside ``deterministic`` and
    ``without_kv_cache`` of the returned model.
    """
    model, parameters, stream, optimizer, scheduler = plain_parts(config, model, tokenizer, data)
    model.train()

    def step() -> None:
        loss = training_loss(model, next(stream))
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm or 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def our_loop(config: AttackConfig, model: nn.Module, tokenizer: Any) -> tuple[nn.Module, Step]:
    """``empirical.engine.attack``'s loop built as ``attack`` builds it (no probe), one
    recorded step (``_AttackLoop._step``: loss, rate, gradient norm, update norm, distance)
    per call."""
    device = torch.device(config.device)
    splits = resolve_data(config)
    model = copy.deepcopy(model)
    parameters = [p for p in model.parameters() if p.requires_grad]
    harm, capability = default_proxies(config.harm_proxy)
    limit = context_length(model)
    recorder = TrajectoryRecorder(
        source="attack", config={}, budget_steps=config.budget_steps,
        trainable_parameters=sum(p.numel() for p in parameters), probe=False, curvature=False,
    )
    loop = _AttackLoop(
        config=config,
        model=model,
        parameters=parameters,
        stream=BatchStream(
            encode_on(tokenizer, splits.attack, limit, device),
            config.batch_size,
            torch.Generator().manual_seed(config.seed),
        ),
        probe_batch=None,
        evaluator=Evaluator(
            tokenizer, splits.evaluation, splits.reference, harm_proxy=harm,
            capability_proxy=capability, max_length=limit, device=device,
        ),
        recorder=recorder,
        flat=share_storage(parameters),  # as ``attack`` runs it (the copy is not returned)
    )
    recorder.iterate(0.0)
    model.train()
    counter = iter(range(config.budget_steps))

    def step() -> None:
        if not loop._step(next(counter)):
            raise RuntimeError("the benchmark's attack diverged")

    return model, step


def bare_loop_seconds(config: AttackConfig, model: nn.Module, tokenizer: Any) -> float:
    """CPU seconds of ``bare_loop``'s ``config.budget_steps`` steps, run on their own."""
    with deterministic(config.seed, torch.device(config.device)):
        model, step = bare_loop(config, model, tokenizer)
    with _prepared(config, model):
        started = time.process_time()
        for _ in range(config.budget_steps):
            step()
        return time.process_time() - started


@contextmanager
def _prepared(config: AttackConfig, *models: nn.Module) -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(deterministic(config.seed, torch.device(config.device)))
        for model in models:
            stack.enter_context(without_kv_cache(model))
        yield


def lockstep(
    config: AttackConfig,
    first: Callable[[], tuple[nn.Module, Step]],
    second: Callable[[], tuple[nn.Module, Step]],
) -> tuple[float, float]:
    """Two loops stepped alternately, one step each, the order alternating: CPU seconds of
    each loop's ``config.budget_steps`` steps. Neighbouring steps see the same machine, so
    the drift of a shared machine's speed cancels at the scale of one step."""
    with deterministic(config.seed, torch.device(config.device)):
        model_a, step_a = first()
        model_b, step_b = second()
    steps, spent = (step_a, step_b), [0.0, 0.0]
    with _prepared(config, model_a, model_b):
        for index in range(config.budget_steps):
            started = time.process_time()
            for which in (0, 1) if index % 2 == 0 else (1, 0):
                steps[which]()
                stopped = time.process_time()
                spent[which] += stopped - started
                started = stopped
    return spent[0], spent[1]


def ours_seconds(config: AttackConfig, model: torch.nn.Module, tokenizer: Any) -> float:
    """CPU seconds of ``run_attack``'s training steps (evaluations excluded)."""
    trajectory = run_attack(config, model=model, tokenizer=tokenizer)
    assert trajectory.timing.train_cpu_seconds is not None
    return trajectory.timing.train_cpu_seconds


def per_batch_scores(model: nn.Module, encoded: EncodedSet) -> TeacherForced:
    """The scores of one set as computed before packing: one pass per cached batch of 64,
    all columns, the logits of every position but the last (the ground truth
    tests/empirical/test_packed_scoring.py compares ``score_packed`` with)."""
    exact, loss_sum, tokens = [], [], []
    model.eval()
    with torch.inference_mode():
        for batch in encoded.batches:
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            targets = batch["labels"][:, 1:]
            predicted = logits[:, :-1, :]
            supervised = targets != IGNORE_INDEX
            hits = (predicted.argmax(dim=-1) == targets) | ~supervised
            token_loss = torch.nn.functional.cross_entropy(
                predicted.transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX,
                reduction="none",
            )
            exact.append(hits.all(dim=1).numpy())
            loss_sum.append((token_loss * supervised).sum(dim=1).double().numpy())
            tokens.append(supervised.sum(dim=1).numpy())
    return TeacherForced(np.concatenate(exact), np.concatenate(loss_sum), np.concatenate(tokens))


def trainer_seconds_per_step(
    config: AttackConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    callbacks: tuple[Any, ...] = (),
) -> float:
    """``transformers.Trainer`` on the same model, data and settings: CPU seconds per
    steady-state step (end of step 1 to end of the last step). ``callbacks``: more
    ``TrainerCallback``s (``profile_step`` hooks its profiler in with one)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    splits = resolve_data(config)
    encoded = encode_on(tokenizer, splits.attack, context_length(model), torch.device("cpu"))
    dataset = [{k: v[i] for k, v in encoded.items()} for i in range(len(splits.attack))]
    marks: list[float] = []

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            marks.append(time.process_time())

    with tempfile.TemporaryDirectory() as directory:
        arguments = TrainingArguments(
            output_dir=directory,
            max_steps=config.budget_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.schedule,
            warmup_steps=config.warmup_fraction,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm or 0.0,
            logging_steps=10 * config.budget_steps,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            seed=config.seed,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=copy.deepcopy(model), args=arguments, train_dataset=dataset,
            callbacks=[StepClock(), *callbacks],
        )
        trainer.train()
    if len(marks) != config.budget_steps:
        raise RuntimeError(f"Trainer ran {len(marks)} steps, not {config.budget_steps}")
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def trainer_lockstep(
    config: AttackConfig, model: torch.nn.Module, tokenizer: Any, warmup: int = 5
) -> tuple[float, float]:
    """``transformers.Trainer`` and ``run_attack``'s recorded steps (``our_loop``) in
    lockstep: one of our steps inside every Trainer step, from a ``TrainerCallback`` (at the
    step's start on even steps, at its end on odd ones). CPU seconds per step of each over
    the steps after ``warmup``: ours timed one by one, the Trainer's the CPU time from the
    end of step ``warmup`` to the end of the last minus ours in between. Neighbouring steps
    see the same machine, as in ``lockstep``; whole runs back to back did not (ratios from
    0.90 to 1.26 in 5 pairs)."""
    from transformers import TrainerCallback

    with deterministic(config.seed, torch.device(config.device)):
        ours_model, ours_step = our_loop(config, model, tokenizer)
    ends: list[float] = []
    ours = [0.0]

    def one_of_ours() -> None:
        started = time.process_time()
        ours_step()
        if len(ends) >= warmup:
            ours[0] += time.process_time() - started

    class Alternate(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            if len(ends) % 2 == 0:
                one_of_ours()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            if len(ends) % 2 == 1:
                one_of_ours()
            ends.append(time.process_time())

    with without_kv_cache(ours_model):
        ours_model.train()
        trainer_seconds_per_step(config, model, tokenizer, callbacks=(Alternate(),))
    steps = config.budget_steps - warmup
    return ours[0] / steps, (ends[-1] - ends[warmup - 1] - ours[0]) / steps


def paired_ratios(
    first: Any, second: Any, pairs: int
) -> tuple[list[float], list[float], list[float]]:
    """``pairs`` runs of ``first()`` and ``second()`` back to back, the order alternating;
    returns (first's values, second's values, first/second per pair)."""
    a: list[float] = []
    b: list[float] = []
    for index in range(pairs):
        if index % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b, [x / y for x, y in zip(a, b, strict=True)]


def run() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure()
    finally:
        torch.set_num_threads(threads)


def _spread(name: str, values: list[float], digits: int) -> dict[str, float]:
    """``name`` (the median), ``name_min`` and ``name_max``."""
    return {
        name: round(statistics.median(values), digits),
        f"{name}_min": round(min(values), digits),
        f"{name}_max": round(max(values), digits),
    }


def _evaluation_ratios(model: nn.Module, tokenizer: Any) -> tuple[list[float], list[float]]:
    """CPU seconds of one packed evaluation pass (both sets) and its ratio to the per-batch
    passes, ``EVALUATION_PAIRS`` interleaved pairs."""
    splits = resolve_data(AttackConfig())
    limit, cpu = context_length(model), torch.device("cpu")
    sets = [
        encode_for_scoring(tokenizer, splits.evaluation, limit=limit, device=cpu),
        encode_for_scoring(tokenizer, splits.reference, limit=limit, device=cpu),
    ]
    packed = pack_for_scoring(sets)

    def timed(work: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            started = time.process_time()
            work()
            return time.process_time() - started

        return run

    ours, _, ratios = paired_ratios(
        timed(lambda: score_packed(model, packed)),
        timed(lambda: [per_batch_scores(model, encoded) for encoded in sets]),
        EVALUATION_PAIRS,
    )
    return ours, ratios


def lean_forward_ratios(
    model: nn.Module, tokenizer: Any, pairs: int = LEAN_PAIRS, repeats: int = LEAN_REPEATS
) -> tuple[list[float], list[float], list[float]]:
    """CPU seconds of one forward and backward pass of the model's own (``causal_lm_loss``)
    and of ``training_loss`` (the lean pass, its per-batch kind check included) on the
    default attack's batches (16 × 17 tokens, the embedded model in training mode without
    the key/value cache, as the attack runs it): ``pairs`` interleaved pairs of ``repeats``
    passes each, the order alternating; (own, lean, own / lean) per pair."""
    config = AttackConfig()
    with deterministic(config.seed, torch.device(config.device)):
        model, _, stream, _, _ = plain_parts(config, model, tokenizer)
    batches = [next(stream) for _ in range(repeats)]
    model.train()

    def passes(loss: Callable[[nn.Module, dict[str, Tensor]], Tensor]) -> Callable[[], float]:
        def run() -> float:
            started = time.process_time()
            for batch in batches:
                torch.autograd.backward(loss(model, batch))
                model.zero_grad(set_to_none=True)
            return (time.process_time() - started) / repeats

        return run

    with without_kv_cache(model):
        passes(training_loss)()  # warm-up, and the lean pass's first-use check
        passes(causal_lm_loss)()
        return paired_ratios(passes(causal_lm_loss), passes(training_loss), pairs)


def _measure() -> dict[str, float]:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model, tokenizer = load_model()
    cpu_started = time.process_time()
    default = attack(AttackConfig(), model=model, tokenizer=tokenizer)
    attack_cpu = time.process_time() - cpu_started
    evaluation, evaluation_ratio = _evaluation_ratios(model, tokenizer)
    own_pass, lean_pass, lean_speedup = lean_forward_ratios(model, tokenizer)
    timed = AttackConfig(budget_steps=LOCKSTEP_STEPS, eval_every=10 * LOCKSTEP_STEPS)
    overhead: list[float] = []
    control: list[float] = []
    ours_total = bare_total = 0.0
    for _ in range(PAIRS):
        ours, bare = lockstep(
            timed,
            lambda: our_loop(timed, model, tokenizer),
            lambda: bare_loop(timed, model, tokenizer),
        )
        overhead.append(ours / bare)
        ours_total, bare_total = ours_total + ours, bare_total + bare
        first, second = lockstep(
            timed,
            lambda: bare_loop(timed, model, tokenizer),
            lambda: bare_loop(timed, model, tokenizer),
        )
        control.append(first / second)
    trainer_config = AttackConfig(budget_steps=STEPS, eval_every=10 * STEPS)
    trainer_step: list[float] = []
    speed: list[float] = []
    for _ in range(TRAINER_PAIRS):
        ours_step, their_step = trainer_lockstep(trainer_config, model, tokenizer)
        trainer_step.append(their_step)
        speed.append(their_step / ours_step)
    trajectory = default.trajectory
    timing = trajectory.timing
    steps = PAIRS * LOCKSTEP_STEPS
    return {
        "attack_steps_per_second": round(trajectory.steps_per_second, 1),
        "attack_cpu_steps_per_second": round(
            trajectory.n_steps / (timing.train_cpu_seconds or float("nan")), 1
        ),
        "attack_wall_seconds": round(timing.wall_seconds, 2),
        "attack_eval_seconds": round(timing.eval_seconds, 2),
        "attack_eval_fraction": round(timing.eval_seconds / timing.wall_seconds, 3),
        "attack_cpu_seconds": round(attack_cpu, 2),
        "attack_eval_cpu_seconds": round(default.eval_cpu_seconds, 2),
        "attack_eval_cpu_fraction": round(default.eval_cpu_seconds / attack_cpu, 3),
        "evaluation_cpu_ms": round(1e3 * statistics.median(evaluation), 1),
        **_spread("evaluation_vs_per_batch_ratio", evaluation_ratio, 3),
        "own_forward_backward_cpu_ms": round(1e3 * statistics.median(own_pass), 3),
        "lean_forward_backward_cpu_ms": round(1e3 * statistics.median(lean_pass), 3),
        **_spread("lean_forward_speedup", lean_speedup, 3),
        "bare_loop_cpu_steps_per_second": round(steps / bare_total, 1),
        "ours_cpu_steps_per_second": round(steps / ours_total, 1),
        **_spread("instrumentation_overhead_ratio", overhead, 4),
        **_spread("instrumentation_control_ratio", control, 4),
        "instrumentation_pairs": float(PAIRS),
        "hf_trainer_cpu_steps_per_second": round(1.0 / statistics.median(trainer_step), 1),
        **_spread("vs_hf_trainer_speed_ratio", speed, 3),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
