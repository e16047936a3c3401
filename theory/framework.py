"""The harmful-training problem as symbolic objects, and the attacker's threat model.

Source: Rosati et al., "Immunization against harmful fine-tuning attacks", Findings of EMNLP
2024 (arXiv 2402.16382), §2; see docs/science.md §1.

A released model M has parameters θ[0]; M* is the immunized model. The attacker fine-tunes on
a harmful data set D_harmful = {(X_i, Y_i)} by steps t = 1, 2, ... up to a budget T:

    (1)  θ[t*] = argmin_{θ[t]} E_{(X,Y)~D_harmful} L(M_θ[t](X), Y),
         θ[t+1] = θ[t] − η_t ∇_θ L_{D_harmful}(θ[t]).

Harm is measured by a proxy f(M, D) against a threshold φ, capability by a proxy g(M, D) with
a tolerance ε. Every symbol of the framework is defined here once; ``theory.conditions``
builds the immunization conditions from them.

Symbols carry only structural assumptions (``integer=True`` for steps, ``real=True`` for
values): numeric assumptions such as φ ≥ 0 or T > 0 are checked on numbers by the conditions,
never assumed away by sympy.

>>> from theory.framework import HarmfulTrainingProblem
>>> problem = HarmfulTrainingProblem()
>>> rhs = problem.update_rule.rhs.subs(problem.gradient, sp.Symbol("grad"))
>>> print(problem.update_rule.lhs, "=", rhs)
theta[t + 1] = -grad*eta[t] + theta[t]
>>> problem.step(1.0, 0.1, 2.0)
0.8
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from typing import Annotated, Any, Literal

import sympy as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sympy.logic.boolalg import Boolean

from theory.errors import AssumptionError

__all__ = [
    "DATA_SETS",
    "D_HARMFUL",
    "D_HARMFUL_HELD_OUT",
    "D_OK",
    "D_REF",
    "AttackSetting",
    "DataSet",
    "HarmfulTrainingProblem",
    "ThreatModel",
    "latex",
]

# --------------------------------------------------------------------------- symbols
#: a training step of the attack (0 = the released model, before any attack step)
t = sp.Symbol("t", integer=True)
#: the attacker's training budget, in steps
T = sp.Symbol("T", integer=True)
#: the step at which the attacker's optimum is reached in (1)
t_star = sp.Symbol("t^*", integer=True)
#: the parameters θ[t] after t attack steps
theta = sp.IndexedBase("theta")
#: the learning rate η_t of step t
eta = sp.IndexedBase("eta")
#: a prompt and its target response
X, Y = sp.symbols("X Y")
#: acceptable harm threshold φ of the harm proxy f
phi = sp.Symbol("phi", real=True)
#: capability tolerance ε of the capability proxy g
epsilon = sp.Symbol("epsilon", real=True)
#: step tolerance of trainability: |t1 − t2| ≤ ε_steps
epsilon_steps = sp.Symbol("epsilon_steps", real=True)
#: the first steps at which harmless fine-tuning of M* (t1) and of M (t2) reaches a target
t1, t2 = sp.symbols("t_1 t_2", integer=True)
#: per-example loss L(M_θ(X), Y)
L = sp.Function("L", real=True)
#: harm proxy f(M, D): higher is more harmful
f = sp.Function("f", real=True)
#: capability proxy g(M, D): a loss (lower is better) or a score (higher is better)
g = sp.Function("g", real=True)
#: the harm categories a data set covers (used by the generalization condition)
categories = sp.Function("categories")


# --------------------------------------------------------------------------- data sets
DataRole = Literal["harmful", "harmful_held_out", "reference", "harmless_training"]


@dataclass(frozen=True)
class DataSet:
    """A named data set of the framework, with its role and a one-line description.

    ``symbol`` is the sympy symbol that stands for the data set in conditions.
    """

    name: str
    role: DataRole
    description: str

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.name)


D_HARMFUL = DataSet(
    "D_harmful",
    "harmful",
    "prompts X with harmful target responses Y that the attacker fine-tunes on; the defence "
    "may have used it",
)
D_HARMFUL_HELD_OUT = DataSet(
    "D'_harmful",
    "harmful_held_out",
    "harmful data disjoint from the data used to build the defence (D' ∩ D = ∅): the same "
    "harm categories (in-domain) or other ones (cross-domain)",
)
D_REF = DataSet(
    "D_ref",
    "reference",
    "harmless reference data on which stability compares the original and immunized models",
)
D_OK = DataSet(
    "D_ok",
    "harmless_training",
    "harmless fine-tuning data on which trainability compares the two models",
)
DATA_SETS: tuple[DataSet, ...] = (D_HARMFUL, D_HARMFUL_HELD_OUT, D_REF, D_OK)


# --------------------------------------------------------------------------- sympy objects
class Model(sp.Function):  # type: ignore[misc]
    """The original model M with parameters ``args[0]``: rendered M_{θ[t]}."""

    nargs = 1

    def _latex(self, printer: Any) -> str:
        return rf"M_{{{printer._print(self.args[0])}}}"


class ImmunizedModel(sp.Function):  # type: ignore[misc]
    """The immunized model M* with parameters ``args[0]``: rendered M^*_{θ[t]}."""

    nargs = 1

    def _latex(self, printer: Any) -> str:
        return rf"M^{{*}}_{{{printer._print(self.args[0])}}}"


class ModelOutput(sp.Function):  # type: ignore[misc]
    """A model applied to a prompt: ``ModelOutput(Model(θ), X)`` renders M_θ(X)."""

    nargs = 2

    def _latex(self, printer: Any) -> str:
        model, prompt = self.args
        return rf"{printer._print(model)}\left({printer._print(prompt)}\right)"


class DataExpectation(sp.Function):  # type: ignore[misc]
    """E_{(X,Y)~D}[body]: ``DataExpectation(body, X, Y, D)``."""

    nargs = 4

    def _latex(self, printer: Any) -> str:
        body, x, y, data = (printer._print(a) for a in self.args)
        return rf"\mathbb{{E}}_{{({x}, {y}) \sim {data}}}\left[{body}\right]"


class Gradient(sp.Function):  # type: ignore[misc]
    """∇_θ h(θ): ``Gradient(h, θ)``."""

    nargs = 2

    def _latex(self, printer: Any) -> str:
        body, wrt = self.args
        return rf"\nabla_{{{printer._print(wrt)}}} {printer._print(body)}"


class ArgMin(sp.Function):  # type: ignore[misc]
    """argmin_v h: ``ArgMin(h, v)``."""

    nargs = 2

    def _latex(self, printer: Any) -> str:
        body, var = self.args
        return rf"\operatorname*{{arg\,min}}_{{{printer._print(var)}}} {printer._print(body)}"


class MinOver(sp.Function):  # type: ignore[misc]
    """min_v h: ``MinOver(h, v)``, the best value of a lower-is-better proxy along a run."""

    nargs = 2
    operator_latex = r"\min"

    def _latex(self, printer: Any) -> str:
        body, var = self.args
        return rf"{self.operator_latex}_{{{printer._print(var)}}} {printer._print(body)}"


class MaxOver(MinOver):
    """max_v h: ``MaxOver(h, v)``, the best value of a higher-is-better proxy along a run."""

    operator_latex = r"\max"


class ForAll(Boolean):  # type: ignore[misc]
    """∀ var ∈ {lower, ..., upper}: body — a statement about every step of an attack.

    ``upper`` may be a symbol (the budget T) or ``oo`` (every step). ``doit()`` expands the
    statement into a conjunction once both bounds are integers, so substituting a budget and
    the measured values gives a truth value; ``over(steps)`` instantiates the body at chosen
    steps (the evaluated ones), which is what a finite measurement can speak about.

    >>> from theory.framework import ForAll, t, phi, f
    >>> sp.latex(ForAll(t, 0, sp.oo, f(t) <= phi))
    '\\\\forall t \\\\in \\\\{0, 1, \\\\dots\\\\}:\\\\; f{\\\\left(t \\\\right)} \\\\leq \\\\phi'
    """

    def __new__(cls, var: sp.Symbol, lower: Any, upper: Any, body: sp.Basic) -> ForAll:
        return super().__new__(cls, var, sp.sympify(lower), sp.sympify(upper), body)  # type: ignore[no-any-return]

    @property
    def variable(self) -> sp.Symbol:
        return self.args[0]

    @property
    def body(self) -> sp.Basic:
        return self.args[3]

    @property
    def free_symbols(self) -> set[sp.Basic]:
        var, lower, upper, body = self.args
        inner = {s for s in body.free_symbols if var not in s.free_symbols}
        return set(lower.free_symbols) | set(upper.free_symbols) | inner

    def over(self, steps: Any) -> sp.Basic:
        """The conjunction of the body at ``steps`` (within the bounds, if they are numbers)."""
        var, lower, upper, body = self.args
        chosen = [
            int(s)
            for s in steps
            if not (lower.is_number and s < lower) and not (upper.is_number and s > upper)
        ]
        return sp.And(*[body.subs(var, s) for s in chosen])

    def doit(self, **hints: Any) -> sp.Basic:
        _, lower, upper, _ = self.args
        if lower.is_Integer and upper.is_Integer:
            return self.over(range(int(lower), int(upper) + 1))
        return self

    def _latex(self, printer: Any) -> str:
        var, lower, upper, body = (printer._print(a) for a in self.args)
        if self.args[2] is sp.oo:
            domain = rf"\{{{lower}, {lower} + 1, \dots\}}" if lower != "0" else r"\{0, 1, \dots\}"
        else:
            domain = rf"\{{{lower}, \dots, {upper}\}}"
        return rf"\forall {var} \in {domain}:\; {body}"

    def _sympystr(self, printer: Any) -> str:
        return "ForAll({})".format(", ".join(printer._print(a) for a in self.args))


class Disjoint(Boolean):  # type: ignore[misc]
    """A ∩ B = ∅. Evaluates to true/false once both arguments are sets sympy can decide on
    (finite sets of numbers, say); stays unevaluated otherwise."""

    def __new__(cls, a: sp.Basic, b: sp.Basic) -> sp.Basic:
        if isinstance(a, sp.Set) and isinstance(b, sp.Set):
            common = a.intersect(b)
            if common is sp.S.EmptySet:
                return sp.true
            if isinstance(common, sp.FiniteSet):
                return sp.false
        return super().__new__(cls, a, b)

    def _latex(self, printer: Any) -> str:
        a, b = (printer._print(x) for x in self.args)
        return rf"{a} \cap {b} = \emptyset"


class SubsetOf(Boolean):  # type: ignore[misc]
    """A ⊆ B. Evaluates to true/false once both arguments are sets sympy can decide on."""

    def __new__(cls, a: sp.Basic, b: sp.Basic) -> sp.Basic:
        if isinstance(a, sp.Set) and isinstance(b, sp.Set):
            inside = a.is_subset(b)
            if inside is not None:
                return sp.true if inside else sp.false
        return super().__new__(cls, a, b)

    def _latex(self, printer: Any) -> str:
        a, b = (printer._print(x) for x in self.args)
        return rf"{a} \subseteq {b}"


#: LaTeX names of the framework's symbols (used by ``latex``)
LATEX_NAMES: dict[sp.Basic, str] = {
    phi: r"\varphi",
    epsilon: r"\varepsilon",
    epsilon_steps: r"\varepsilon_{\mathrm{steps}}",
    t_star: r"t^{*}",
    **{d.symbol: d.name.replace("_", r"_{\mathrm{", 1) + "}}" for d in DATA_SETS},
}


def latex(expr: sp.Basic, order: str | None = None) -> str:
    """LaTeX of a framework expression, with the framework's symbol names (D_{harmful} ...).

    ``order="none"`` keeps the order of the terms as built (sympy's printer option).
    """
    return str(sp.latex(expr, symbol_names=LATEX_NAMES, order=order))


# --------------------------------------------------------------------------- problem (1)
@dataclass(frozen=True)
class HarmfulTrainingProblem:
    """The attacker's problem (1) and its gradient-descent update rule.

    ``objective`` is L_D(θ[t]) = E_{(X,Y)~D} L(M_θ[t](X), Y) for the data set ``data``
    (D_harmful by default); ``solution`` is θ[t*] = argmin_{θ[t]} L_D(θ[t]); ``update_rule``
    is θ[t+1] = θ[t] − η_t ∇_θ L_D(θ[t]). ``step`` evaluates the update rule on numbers.
    """

    data: DataSet = D_HARMFUL
    objective: sp.Basic = field(init=False)
    solution: sp.Eq = field(init=False)
    update_rule: sp.Eq = field(init=False)

    def __post_init__(self) -> None:
        objective = DataExpectation(L(ModelOutput(Model(theta[t]), X), Y), X, Y, self.data.symbol)
        object.__setattr__(self, "objective", objective)
        object.__setattr__(self, "solution", sp.Eq(theta[t_star], ArgMin(objective, theta[t])))
        descent = sp.Mul(-1, eta[t], Gradient(objective, theta[t]), evaluate=False)
        update = sp.Eq(theta[t + 1], sp.Add(theta[t], descent, evaluate=False))
        object.__setattr__(self, "update_rule", update)

    @property
    def gradient(self) -> sp.Basic:
        """∇_θ L_D(θ[t]), the term of the update rule that ``step`` takes as a number."""
        return Gradient(self.objective, theta[t])

    def latex(self) -> str:
        """Problem (1) and the update rule as one LaTeX string."""
        lhs, rhs = self.update_rule.args
        update = f"{latex(lhs)} = {latex(rhs, order='none')}"
        return rf"{latex(self.solution)} \quad\text{{with}}\quad {update}"

    @property
    def _step_function(self) -> Callable[..., Any]:
        return _lambdified_update(self.update_rule.rhs, self.gradient)

    def step(self, parameters: Any, learning_rate: float, gradient: Any) -> Any:
        """θ[t+1] from θ[t] = ``parameters``, η_t and ∇L(θ[t]) (floats or numpy arrays).

        Raises ``AssumptionError`` unless η_t is finite and > 0.
        """
        if not (math.isfinite(learning_rate) and learning_rate > 0):
            raise AssumptionError(
                "harmful_training", "learning_rate_positive", f"eta_t = {learning_rate}"
            )
        return self._step_function(parameters, learning_rate, gradient)


@lru_cache(maxsize=32)
def _lambdified_update(rhs: sp.Basic, gradient: sp.Basic) -> Callable[..., Any]:
    """The right-hand side of an update rule as a numpy function of (θ[t], η_t, ∇L)."""
    p, lr, grad = sp.symbols("p lr grad", real=True)
    numeric = rhs.subs(gradient, grad).subs({theta[t]: p, eta[t]: lr})
    return sp.lambdify((p, lr, grad), numeric, modules="numpy")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- threat model
Optimizer = Literal["sgd", "adam", "adamw"]
"""The attacker's optimizers: the one definition every layer uses (the threat model, the
attack configuration, the search space, the claim's trainability run)."""
Schedule = Literal["constant", "linear", "cosine"]
"""Learning-rate schedules (with linear warm-up): the one definition."""
Method = Literal["full", "lora", "head"]
"""Full fine-tuning, LoRA, or the output head only (head untied): the one definition."""
PositiveRate = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
Seed = Annotated[int, Field(ge=0, strict=True)]


def _unique(values: tuple[Any, ...], field_name: str) -> tuple[Any, ...]:
    if not values:
        raise ValueError(f"{field_name} must list at least one value")
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{field_name} lists {v!r} twice")
        seen.add(v)
    return values


class AttackSetting(BaseModel):
    """One attack of a threat model: a single value of each of its axes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget_steps: PositiveInt
    learning_rate: PositiveRate
    optimizer: Optimizer
    schedule: Schedule
    warmup_fraction: float
    max_grad_norm: float | None
    lora: bool
    batch_size: PositiveInt
    seed: Seed

    def label(self) -> str:
        """One line naming the attack, e.g. ``adamw lr 0.0003 cosine full batch 16 seed 1``."""
        method = "lora" if self.lora else "full"
        return (
            f"{self.optimizer} lr {self.learning_rate:g} {self.schedule} {method} batch "
            f"{self.batch_size} seed {self.seed}"
        )


class ThreatModel(BaseModel):
    """What the attacker may do: the attacks a resistance claim must survive.

    A white-box attacker fine-tunes for at most ``budget_steps`` steps (the budget T of weak
    resistance), choosing any combination of the listed learning rates (or, with
    ``learning_rate_range = [low, high]``, any rate in that interval; the listed rates are then
    the grid inside it that every verification runs), optimizers, schedules
    (with linear warmup over ``warmup_fraction`` of the budget), gradient clipping at
    ``max_grad_norm`` (None: no clipping), full fine-tuning or LoRA (``lora = "both"``: each),
    batch sizes and seeds. The defaults follow the replication protocol of Qi, Wei, Carlini et
    al. (ICLR 2025): AdamW, cosine schedule with 10% warmup, batch 4, five seeds.

    Field names read as TOML keys::

        budget_steps = 200
        learning_rates = [1e-4, 3e-4, 1e-3]
        optimizers = ["adamw", "sgd"]
        lora = "both"
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget_steps: PositiveInt
    learning_rates: tuple[PositiveRate, ...]
    learning_rate_range: tuple[PositiveRate, PositiveRate] | None = None
    optimizers: tuple[Optimizer, ...] = ("adamw",)
    schedules: tuple[Schedule, ...] = ("cosine",)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1, allow_inf_nan=False, strict=True)
    max_grad_norm: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)
    lora: bool | Literal["both"] = Field(default=False, union_mode="left_to_right")
    batch_sizes: tuple[PositiveInt, ...] = (4,)
    seeds: tuple[Seed, ...] = (0, 1, 2, 3, 4)

    @field_validator("learning_rates", "optimizers", "schedules", "batch_sizes", "seeds")
    @classmethod
    def _non_empty_and_unique(cls, values: tuple[Any, ...], info: Any) -> tuple[Any, ...]:
        return _unique(values, info.field_name)

    @model_validator(mode="after")
    def _rates_inside_range(self) -> ThreatModel:
        if self.learning_rate_range is not None:
            low, high = self.learning_rate_range
            if not low < high:
                raise ValueError("learning_rate_range must be [low, high] with low < high")
            outside = [r for r in self.learning_rates if not low <= r <= high]
            if outside:
                raise ValueError(
                    f"learning_rates must lie in learning_rate_range [{low:g}, {high:g}] "
                    f"({outside[0]:g} is outside)"
                )
        return self

    def learning_rate_bounds(self) -> tuple[float, float]:
        """The smallest and largest learning rate the attacker may use: the declared range,
        else the smallest and largest listed rate."""
        if self.learning_rate_range is not None:
            return (float(self.learning_rate_range[0]), float(self.learning_rate_range[1]))
        return (float(min(self.learning_rates)), float(max(self.learning_rates)))

    def contains_learning_rate(self, rate: float) -> bool:
        """Whether ``rate`` is one the attacker may use (in the range, or listed)."""
        if self.learning_rate_range is None:
            return rate in self.learning_rates
        low, high = self.learning_rate_bounds()
        return low <= rate <= high

    @field_validator("lora", mode="before")
    @classmethod
    def _lora_flag(cls, value: Any) -> Any:
        if not (isinstance(value, bool) or value == "both"):
            raise ValueError(f'lora must be true, false or "both", not {value!r}')
        return value

    @property
    def lora_modes(self) -> tuple[bool, ...]:
        """The fine-tuning modes the attacker may use: (False,), (True,) or (False, True)."""
        return (False, True) if self.lora == "both" else (bool(self.lora),)

    def attack_settings(self) -> tuple[AttackSetting, ...]:
        """Every combination of the threat model's axes (the attacks a verifier must run)."""
        return tuple(
            AttackSetting(
                budget_steps=self.budget_steps,
                learning_rate=lr,
                optimizer=opt,
                schedule=sched,
                warmup_fraction=self.warmup_fraction,
                max_grad_norm=self.max_grad_norm,
                lora=lora,
                batch_size=batch,
                seed=seed,
            )
            for lr, opt, sched, lora, batch, seed in product(
                self.learning_rates,
                self.optimizers,
                self.schedules,
                self.lora_modes,
                self.batch_sizes,
                self.seeds,
            )
        )

    def substitutions(self) -> Mapping[sp.Symbol, int]:
        """The framework symbols this threat model fixes: the budget T."""
        return {T: self.budget_steps}
