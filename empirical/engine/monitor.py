"""``ImmunizationMonitor``: the attack's measurements, recorded from any ``transformers.Trainer``
(and its subclasses, such as TRL's ``SFTTrainer``: tests/empirical/test_monitor.py runs both).

The durability study of Qi et al. (ICLR 2025) broke published defences by attacking them
with a standard trainer instead of the authors' loop; an auditor therefore wants the same
record from a ``Trainer`` run as from ``empirical.engine.attack``. Added to a ``Trainer``'s
callbacks, the monitor records a ``Trajectory`` (``source="trainer"``) with the same indexing
(``empirical.measurement.trajectory``):

* per step s: the learning rate η_s (read from the optimizer before the update), the update
  norm ‖θ_{s+1} − θ_s‖ and the distance ‖θ_{s+1} − θ_0‖ over the trainable parameters (from
  parameter snapshots), and the training loss and pre-clipping gradient norm that the
  Trainer logs; these are exactly step s's values when ``logging_steps=1`` (with a longer
  logging window the loss is an average over the window and is left unrecorded);
* at θ_0, every ``eval_every`` steps and at the end: the held-out harmful loss and the harm
  and capability proxies, as in ``empirical.engine.evaluator.Evaluator``.

Divergence: a logged non-finite loss at step s, or non-finite parameters after step s,
marks the run diverged (at s, resp. s + 1) and asks the Trainer to stop. Set
``logging_nan_inf_filter=False``: otherwise the Trainer replaces a NaN loss by an average
before logging it (the parameter check still catches the divergence one step later).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from empirical.datasets.data import Example
from empirical.engine.attack import ParameterFlattener
from empirical.engine.evaluator import Evaluator, default_proxies
from empirical.measurement.trajectory import Environment, Timing, Trajectory, TrajectoryRecorder
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from empirical.measurement.proxies import CapabilityProxy, HarmProxy

_RECORDED_ARGUMENTS: tuple[str, ...] = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "optim",
    "seed",
    "logging_steps",
)


class ImmunizationMonitor(TrainerCallback):  # type: ignore[misc]
    """Record a ``Trajectory`` from a ``Trainer`` run (see the module docstring).

    Args:
        tokenizer: the model's tokenizer (the proxies tokenize with it).
        evaluation: held-out harmful examples (harmful loss, harm proxy).
        reference: harmless examples for the capability proxy.
        harm_proxy, capability_proxy: default ``empirical.engine.evaluator.default_proxies()``.
        eval_every: evaluation period in optimizer steps.
        max_length: token limit for encoding the evaluation data (default: the model's context).
        config: extra JSON-serialisable provenance stored in ``Trajectory.config``.
    """

    def __init__(
        self,
        *,
        tokenizer: PreTrainedTokenizerBase,
        evaluation: Sequence[Example],
        reference: Sequence[Example],
        harm_proxy: HarmProxy | None = None,
        capability_proxy: CapabilityProxy | None = None,
        eval_every: int = 20,
        max_length: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        if eval_every < 1:
            raise HftaInputError(f"eval_every must be at least 1, got {eval_every}")
        if not evaluation or not reference:
            raise HftaInputError("the monitor needs evaluation and reference examples")
        if harm_proxy is None or capability_proxy is None:
            default_harm, default_capability = default_proxies()
            harm_proxy = harm_proxy or default_harm
            capability_proxy = capability_proxy or default_capability
        self.tokenizer = tokenizer
        self.evaluation = list(evaluation)
        self.reference = list(reference)
        self.harm_proxy: HarmProxy = harm_proxy
        self.capability_proxy: CapabilityProxy = capability_proxy
        self.eval_every = eval_every
        self.max_length = max_length
        self.extra_config = dict(config or {})
        self._trajectory: Trajectory | None = None
        self._recorder: TrajectoryRecorder | None = None
        self._evaluator: Evaluator | None = None
        self._parameters: list[nn.Parameter] = []
        self._flatten = ParameterFlattener([])
        self._start = torch.zeros(0)
        self._previous = torch.zeros(0)
        self._spare = torch.zeros(0)
        self._norms = torch.zeros(2)
        self._rate: float | None = None
        self._last_logged = 0
        self._last_evaluated = -1
        self._device = "cpu"
        self._dtype = "float32"
        self._started = 0.0
        self._started_cpu = 0.0
        self._eval_seconds = 0.0
        self._eval_cpu_seconds = 0.0

    # ----------------------------------------------------------------- results
    @property
    def trajectory(self) -> Trajectory:
        """The recorded trajectory (available once training has ended)."""
        if self._trajectory is None:
            raise HftaInputError("the monitor has no trajectory yet: train first")
        return self._trajectory

    # ----------------------------------------------------------------- helpers
    def _recording(self) -> TrajectoryRecorder:
        if self._recorder is None:
            raise HftaInputError("ImmunizationMonitor: on_train_begin was not called")
        return self._recorder

    def _evaluate(self, model: nn.Module, step: int) -> None:
        recorder = self._recording()
        if self._evaluator is None or recorder.diverged_at is not None:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        harmful_loss, harm, capability = self._evaluator(model)
        self._eval_seconds += time.perf_counter() - wall
        self._eval_cpu_seconds += time.process_time() - cpu
        self._last_evaluated = step
        if harmful_loss is None:
            recorder.diverge(step, f"held-out harmful loss is not finite at step {step}")
            return
        recorder.evaluation(step, harmful_loss=harmful_loss, harm=harm, capability=capability)

    def _measure(self) -> tuple[float, float]:
        """(‖θ_{s+1} − θ_s‖, ‖θ_{s+1} − θ_0‖) over the trainable parameters as one float32
        vector, as ``empirical.engine.attack``'s loop measures them: θ_{s+1} flattened into
        the spare buffer, Δ_s written over θ_s and reduced, then θ_{s+1} − θ_0 in the same
        buffer, which is the spare one at the next step (the same kernels as allocating
        ``current - previous``: the same bits)."""
        current = self._flatten(out=self._spare)
        norms, scratch = self._norms, self._previous
        delta = torch.sub(current, scratch, out=scratch)
        torch.linalg.vector_norm(delta, out=norms[0])
        offset = torch.sub(current, self._start, out=scratch)
        torch.linalg.vector_norm(offset, out=norms[1])
        self._spare, self._previous = scratch, current
        update, distance = norms.tolist()
        return update, distance

    # ----------------------------------------------------------------- callbacks
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        if model is None:
            raise HftaInputError("ImmunizationMonitor needs the Trainer's model")
        self._started = time.perf_counter()
        self._started_cpu = time.process_time()
        self._eval_seconds = 0.0
        self._eval_cpu_seconds = 0.0
        self._parameters = [p for p in model.parameters() if p.requires_grad]
        if not self._parameters:
            raise HftaInputError("the model has no trainable parameters")
        first = self._parameters[0]
        self._device = str(first.device)
        self._dtype = str(first.dtype).removeprefix("torch.")
        # θ_0 and two buffers that take θ_s and θ_{s+1} in turn: no allocation per step
        self._flatten = ParameterFlattener(self._parameters)
        self._start = self._flatten()
        self._previous = self._start.clone()
        self._spare = torch.empty_like(self._start)
        self._norms = torch.zeros(2, device=self._start.device)
        self._last_logged = state.global_step
        self._last_evaluated = -1
        self._trajectory = None
        from empirical.measurement.proxies import context_length

        max_length = self.max_length or context_length(model)
        self._evaluator = Evaluator(
            self.tokenizer,
            self.evaluation,
            self.reference,
            harm_proxy=self.harm_proxy,
            capability_proxy=self.capability_proxy,
            max_length=max_length,
            device=first.device,
        )
        arguments = {k: _json_value(getattr(args, k, None)) for k in _RECORDED_ARGUMENTS}
        self._recorder = TrajectoryRecorder(
            source="trainer",
            config={
                "trainer": arguments,
                "eval_every": self.eval_every,
                "harm_proxy": self.harm_proxy.name,
                "capability_proxy": self.capability_proxy.name,
                **self.extra_config,
            },
            budget_steps=max(1, int(state.max_steps)),
            trainable_parameters=sum(p.numel() for p in self._parameters),
            probe=False,
            curvature=False,
        )
        self._recorder.iterate(0.0)
        self._evaluate(model, 0)
        return control

    def on_step_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: torch.optim.Optimizer | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        self._rate = None if optimizer is None else float(optimizer.param_groups[0]["lr"])
        return control

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        recorder = self._recording()
        if recorder.diverged_at is not None:
            control.should_training_stop = True
            return control
        update, distance = self._measure()
        step = recorder.n_steps + 1
        finite = math.isfinite(update) and math.isfinite(distance)
        recorder.step(
            train_loss=None,
            learning_rate=self._rate,
            grad_norm=None,
            update_norm=update if finite else None,
        )
        recorder.iterate(distance if finite else None)
        if not finite:
            recorder.diverge(step, f"parameters are not finite after step {step - 1}")
            control.should_training_stop = True
        elif model is not None and step % self.eval_every == 0:
            self._evaluate(model, step)
            if recorder.diverged_at is not None:
                control.should_training_stop = True
        return control

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        recorder = self._recording()
        if not logs or "loss" not in logs:
            return control
        window = state.global_step - self._last_logged
        self._last_logged = state.global_step
        step = recorder.n_steps - 1
        if window != 1 or step < 0:
            return control
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            recorder.diverge(step, f"training loss is not finite at step {step}")
            control.should_training_stop = True
            return control
        recorder.columns["train_loss"][step] = loss
        grad_norm = logs.get("grad_norm")
        if grad_norm is not None and math.isfinite(float(grad_norm)):
            recorder.columns["grad_norm"][step] = float(grad_norm)
        return control

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        recorder = self._recording()
        if model is not None and self._last_evaluated != recorder.n_steps:
            self._evaluate(model, recorder.n_steps)
        wall = time.perf_counter() - self._started
        cpu = time.process_time() - self._started_cpu
        self._trajectory = recorder.finish(
            timing=Timing(
                wall_seconds=wall,
                train_seconds=max(0.0, wall - self._eval_seconds),
                eval_seconds=self._eval_seconds,
                train_cpu_seconds=max(0.0, cpu - self._eval_cpu_seconds),
            ),
            environment=Environment.current(self._device, self._dtype),
            capability_higher_is_better=self.capability_proxy.higher_is_better,
        )
        return control


def _json_value(value: Any) -> Any:
    """A TrainingArguments value as JSON (enums by value, other objects as text)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
