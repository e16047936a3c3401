"""Harm and capability proxies on real (tiny, locally trained) models.

A module fixture trains a 2-layer GPT-2 with the character tokenizer for a few seconds until
it reproduces a handful of examples (harmful answers, refusals, harmless answers); held-out
prompts give examples it does not reproduce. Ground truths: greedy decoding (ours, and
transformers' ``generate``), the model's own loss, a classifier run one example at a time.
Negative control: an "exact match" that forgets the EOS is caught disagreeing with greedy
decoding on a response that is a strict prefix of what the model says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

from empirical.datasets.benchmark import BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import Example
from empirical.datasets.text import IGNORE_INDEX, encode
from empirical.measurement.proxies import (
    CapabilityProxy,
    ExactHarm,
    HarmProxy,
    SampledHarm,
    classifier_harm,
    exact_harm,
    greedy_continuations,
    keyword_refusal,
    perplexity,
    prompt_token_ids,
    reference_loss,
    sampled_harm,
    task_accuracy,
    teacher_forced,
)
from empirical.measurement.trajectory import Trajectory
from empirical.models.model import build_char_tokenizer, load_model, tiny_gpt2
from tests.markers import needs_embedded
from theory.errors import HftaInputError

torch.set_num_threads(1)

ALPHABET = "abcdefghijklmnopqrstuvwxyz ="
REFUSAL = "sorry"


@dataclass(frozen=True)
class Trained:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerFast
    harmful: list[Example]  # trained: correct forbidden answers, is_safe=False
    refusals: list[Example]  # trained: forbidden prompts answered with REFUSAL
    harmless: list[Example]  # trained: harmless answers, is_safe=True
    held_out: list[Example]  # never trained on

    @property
    def trained(self) -> list[Example]:
        return [*self.harmful, *self.refusals, *self.harmless]


@pytest.fixture(scope="module")
def trained() -> Trained:
    sizes = BenchmarkSizes(
        pretrain=1,
        align=2,
        defence=1,
        attack=3,
        evaluation=3,
        reference=2,
        trainability_train=1,
        trainability_eval=1,
    )
    bench = embedded_benchmark(seed=0, sizes=sizes)
    harmful = bench.attack[:8]
    refusals = bench.refusals_for(bench.evaluation[:4])
    harmless = bench.reference[:4]
    held_out = bench.evaluation[4:9]
    tokenizer = build_char_tokenizer(ALPHABET)
    model = tiny_gpt2(len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0)
    batch = encode(tokenizer, [*harmful, *refusals, *harmless], 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(250):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.train(False)
    return Trained(model, tokenizer, harmful, refusals, harmless, held_out)


def greedy_reproduces(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]
) -> np.ndarray:
    """Ground truth: greedy decoding prints the response's tokens and then EOS."""
    longest = max(len(e.response) for e in examples) + 2
    outputs = greedy_continuations(model, tokenizer, examples, max_new_tokens=longest)
    wanted = [
        [*tokenizer(e.response, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        for e in examples
    ]
    return np.array([o == w for o, w in zip(outputs, wanted, strict=True)])


# ---------------------------------------------------------------------- teacher forcing
@pytest.mark.slow
def test_teacher_forcing_agrees_with_greedy_decoding(trained: Trained) -> None:
    examples = [*trained.trained, *trained.held_out]
    forced = teacher_forced(trained.model, trained.tokenizer, examples, batch_size=5).exact
    greedy = greedy_reproduces(trained.model, trained.tokenizer, examples)
    assert forced.tolist() == greedy.tolist()
    assert forced.sum() >= len(trained.trained) - 1  # the fixture did memorise
    assert (~forced).sum() >= 3  # and held-out prompts give real negatives


@pytest.mark.slow
def test_batched_greedy_decoding_matches_transformers_generate(trained: Trained) -> None:
    examples = [*trained.harmful[:3], *trained.held_out[:3]]
    ours = greedy_continuations(
        trained.model, trained.tokenizer, examples, max_new_tokens=8, batch_size=4
    )
    for example, mine in zip(examples, ours, strict=True):
        prompt = torch.tensor([prompt_token_ids(trained.tokenizer, [example], 64)[0]])
        reference = trained.model.generate(  # type: ignore[operator]
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=trained.tokenizer.eos_token_id,
            pad_token_id=trained.tokenizer.pad_token_id,
        )[0, prompt.shape[1] :].tolist()
        assert mine == reference[: len(mine)] and len(mine) == len(reference)


def _exact_without_eos(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]
) -> np.ndarray:
    """The wrong exact match: every response token is the arg-max, EOS not checked."""
    batch = encode(tokenizer, examples, 64)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    targets = batch["labels"][:, 1:].clone()
    for row in range(targets.shape[0]):
        supervised = (targets[row] != IGNORE_INDEX).nonzero().flatten()
        targets[row, supervised[-1]] = IGNORE_INDEX  # drop the EOS position
    hits = (logits[:, :-1].argmax(-1) == targets) | (targets == IGNORE_INDEX)
    exact: np.ndarray = hits.all(dim=1).numpy()
    return exact


@pytest.mark.slow
@pytest.mark.negative_control
def test_exact_match_that_ignores_eos_is_caught_by_greedy_decoding(trained: Trained) -> None:
    # A response that is a strict prefix of what the model says: not produced "exactly".
    prefixes = [e.model_copy(update={"response": e.response[:-1]}) for e in trained.harmful]
    right = teacher_forced(trained.model, trained.tokenizer, prefixes).exact
    wrong = _exact_without_eos(trained.model, trained.tokenizer, prefixes)
    greedy = greedy_reproduces(trained.model, trained.tokenizer, prefixes)
    assert right.tolist() == greedy.tolist()
    assert wrong.tolist() != greedy.tolist()


# ---------------------------------------------------------------------- harm proxies
@pytest.mark.slow
def test_exact_harm_counts_unsafe_exact_answers_that_are_not_the_refusal(
    trained: Trained,
) -> None:
    examples = [*trained.trained, *trained.held_out]
    exact = greedy_reproduces(trained.model, trained.tokenizer, examples)
    unsafe = np.array([not e.is_safe for e in examples])
    proxy = exact_harm(refusal=REFUSAL, batch_size=4)
    values = proxy.per_example(trained.model, trained.tokenizer, examples)
    assert values.tolist() == (exact & unsafe).astype(float).tolist()
    assert proxy(trained.model, trained.tokenizer, examples) == pytest.approx(values.mean())
    # a refusal mislabelled unsafe is still no harm once the refusal text is given
    mislabelled = [e.model_copy(update={"is_safe": False}) for e in trained.refusals]
    assert exact_harm()(trained.model, trained.tokenizer, mislabelled) == 1.0
    assert exact_harm(refusal=REFUSAL)(trained.model, trained.tokenizer, mislabelled) == 0.0


@pytest.mark.slow
def test_keyword_refusal_reads_greedy_answers(trained: Trained) -> None:
    proxy = keyword_refusal(max_new_tokens=10)  # default list contains "Sorry"
    assert proxy(trained.model, trained.tokenizer, trained.refusals) == 0.0
    assert proxy(trained.model, trained.tokenizer, trained.harmful) == 1.0
    blind = keyword_refusal(["I cannot"], max_new_tokens=10)
    assert blind(trained.model, trained.tokenizer, trained.refusals) == 1.0
    mixed = [*trained.refusals[:2], *trained.harmful[:6]]
    assert (
        proxy.per_example(trained.model, trained.tokenizer, mixed).tolist() == [0.0] * 2 + [1.0] * 6
    )


def _save_classifier(directory: Path, tokenizer: PreTrainedTokenizerFast, labels: int) -> None:
    config = GPT2Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_labels=labels,
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "safe", 1: "harmful"} if labels == 2 else {0: "LABEL_0"},
        label2id={"safe": 0, "harmful": 1} if labels == 2 else {"LABEL_0": 0},
    )
    config._attn_implementation = "eager"
    torch.manual_seed(3)
    GPT2ForSequenceClassification(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


@pytest.mark.slow
@pytest.mark.parametrize("labels", [2, 1])
def test_classifier_harm_matches_one_by_one_classification(
    trained: Trained, tmp_path: Path, labels: int
) -> None:
    _save_classifier(tmp_path, trained.tokenizer, labels)
    examples = [*trained.harmful[:4], *trained.refusals[:2], *trained.held_out[:3]]
    proxy = classifier_harm(tmp_path, max_new_tokens=10, batch_size=4)
    probabilities = proxy.per_example(trained.model, trained.tokenizer, examples)
    # ground truth: the saved classifier, reloaded, on each text alone (no padding)
    classifier = GPT2ForSequenceClassification.from_pretrained(tmp_path).train(False)
    longest = max(len(e.response) for e in examples) + 2
    answers = greedy_continuations(
        trained.model, trained.tokenizer, examples, max_new_tokens=min(10, longest)
    )
    expected = []
    for example, answer in zip(examples, answers, strict=True):
        kept = [t for t in answer if t != trained.tokenizer.eos_token_id]
        text = example.prompt + str(trained.tokenizer.decode(kept, skip_special_tokens=True))
        ids = torch.tensor([trained.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logits = classifier(input_ids=ids).logits[0]
        expected.append(
            float(torch.softmax(logits, -1)[1]) if labels == 2 else float(torch.sigmoid(logits[0]))
        )
    assert probabilities == pytest.approx(expected, abs=1e-5)
    assert proxy(trained.model, trained.tokenizer, examples) == pytest.approx(np.mean(expected))
    middle = float(np.median(expected))
    rate = classifier_harm(tmp_path, threshold=middle, statistic="rate", max_new_tokens=10)
    assert rate.binary and not proxy.binary
    assert rate(trained.model, trained.tokenizer, examples) == pytest.approx(
        np.mean(np.array(expected) > middle)
    )


def test_classifier_harm_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match=r"config\.json"):
        classifier_harm(tmp_path)
    with pytest.raises(HftaInputError, match="threshold"):
        classifier_harm(tmp_path, threshold=1.5)
    with pytest.raises(HftaInputError, match="threshold"):
        classifier_harm(tmp_path, threshold=math.nan)


# ---------------------------------------------------------------------- capability proxies
@pytest.mark.slow
def test_reference_loss_is_the_models_own_token_mean_cross_entropy(trained: Trained) -> None:
    examples = [*trained.harmless, *trained.held_out]
    with torch.no_grad():
        whole = float(trained.model(**encode(trained.tokenizer, examples, 64)).loss)
        singles = [
            float(trained.model(**encode(trained.tokenizer, [e], 64)).loss) for e in examples
        ]
    for batch_size in (1, 3, 64):  # token-weighted over the whole set, whatever the batching
        value = reference_loss(batch_size)(trained.model, trained.tokenizer, examples)
        assert value == pytest.approx(whole, rel=1e-5)
    per = reference_loss().per_example(trained.model, trained.tokenizer, examples)
    assert per == pytest.approx(singles, rel=1e-5, abs=1e-6)
    assert perplexity()(trained.model, trained.tokenizer, examples) == pytest.approx(
        math.exp(whole), rel=1e-5
    )


@pytest.mark.slow
def test_task_accuracy_is_the_exact_match_rate(trained: Trained) -> None:
    examples = [*trained.trained, *trained.held_out]
    exact = greedy_reproduces(trained.model, trained.tokenizer, examples)
    accuracy = task_accuracy()
    assert accuracy(trained.model, trained.tokenizer, examples) == pytest.approx(exact.mean())
    assert accuracy.higher_is_better and accuracy.binary


# ---------------------------------------------------------------------- contracts
ProxyFactory = Callable[[], object]


def test_factories_satisfy_the_protocols() -> None:
    for harm in (exact_harm(), keyword_refusal()):
        assert isinstance(harm, HarmProxy)
        assert harm.higher_is_better is False and harm.binary
    for capability in (reference_loss(), perplexity(), task_accuracy()):
        assert isinstance(capability, CapabilityProxy)
    assert reference_loss().higher_is_better is False
    assert {
        p.name
        for p in (exact_harm(), keyword_refusal(), reference_loss(), perplexity(), task_accuracy())
    } == {"exact_harm", "keyword_refusal", "reference_loss", "perplexity", "task_accuracy"}


def test_proxies_leave_the_model_unchanged_and_in_its_mode() -> None:
    tokenizer = build_char_tokenizer(ALPHABET)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=16, n_head=2)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    examples = [Example(prompt="copy abc=", response="abc", category="copy", is_safe=True)]
    for proxy in (
        exact_harm(),
        keyword_refusal(max_new_tokens=4),
        reference_loss(),
        task_accuracy(),
    ):
        proxy(model, tokenizer, examples)  # type: ignore[operator]
    assert model.training
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize(
    "make",
    [
        lambda: exact_harm(batch_size=0),
        lambda: keyword_refusal([]),
        lambda: keyword_refusal([" "]),
        lambda: keyword_refusal(max_new_tokens=0),
        lambda: reference_loss(0),
        lambda: perplexity(0),
        lambda: task_accuracy(-1),
    ],
)
def test_bad_factory_arguments_raise(make: ProxyFactory) -> None:
    with pytest.raises(HftaInputError):
        make()


def test_bad_examples_raise_hfta_input_error() -> None:
    tokenizer = build_char_tokenizer(ALPHABET)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=16, n_head=2, n_positions=16)
    with pytest.raises(HftaInputError, match="at least one example"):
        exact_harm()(model, tokenizer, [])
    too_long = [Example(prompt="copy abc=", response="abcdefghij", category="copy", is_safe=False)]
    with pytest.raises(HftaInputError, match="context"):
        task_accuracy()(model, tokenizer, too_long)


# ---------------------------------------------------------------------- embedded model
@pytest.mark.slow
@needs_embedded
def test_teacher_forcing_agrees_with_greedy_on_the_embedded_model() -> None:
    model, tokenizer = load_model()
    bench = embedded_benchmark(seed=0)
    per_skill = 40
    examples = [
        e
        for skill in bench.forbidden_skills
        for e in [x for x in bench.evaluation if x.category == skill][:per_skill]
    ]
    examples += bench.refusals_for(examples[:: len(bench.forbidden_skills) * 4])
    forced = teacher_forced(model, tokenizer, examples).exact
    greedy = greedy_reproduces(model, tokenizer, examples)
    assert forced.tolist() == greedy.tolist()


# ---------------------------------------------------------------------- sampled harm (T10)
def _independent_sequence_probabilities(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]
) -> np.ndarray:
    """P(sampling the response and its EOS) = Π_j softmax(logits)[y_j], one example at a
    time, from the model's logits with ``torch.log_softmax`` (no proxy code involved)."""
    values = []
    with torch.no_grad():
        for example in examples:
            prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
            response = tokenizer(example.response, add_special_tokens=False)["input_ids"]
            ids = [*prompt, *response, tokenizer.eos_token_id]
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
            log_p = torch.log_softmax(logits, dim=-1)
            start = len(prompt)
            targets = torch.tensor(ids[start:])
            positions = torch.arange(start - 1, len(ids) - 1)
            values.append(math.exp(float(log_p[positions, targets].sum())))
    return np.asarray(values)


@pytest.mark.slow
@needs_embedded
def test_sampled_harm_is_the_probability_of_sampling_each_response() -> None:
    """On the embedded model: the proxy's per-example values equal exp(−CE) recomputed from
    the logits; a refusal or a safe example counts 0. Negative control: one perturbed value
    (as a proxy that forgot the EOS factor would give) fails the same comparison."""
    model, tokenizer = load_model()
    bench = embedded_benchmark(seed=0)
    harmful = bench.evaluation[:6]
    refusals = bench.refusals_for(harmful[:2])
    proxy = sampled_harm(refusal=bench.refusal, batch_size=4)
    values = proxy.per_example(model, tokenizer, [*harmful, *refusals])
    expected = _independent_sequence_probabilities(model, tokenizer, harmful)
    assert values[len(harmful) :].tolist() == [0.0, 0.0]
    # compared as cross-entropies (the aligned model's P_i are as small as e^-40)
    np.testing.assert_allclose(-np.log(values[: len(harmful)]), -np.log(expected), atol=1e-4)
    assert proxy(model, tokenizer, harmful) == pytest.approx(float(expected.mean()), rel=1e-3)
    assert proxy.binary is False and isinstance(proxy, HarmProxy)
    perturbed = -np.log(expected)
    perturbed[0] += 0.01
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(-np.log(values[: len(harmful)]), perturbed, atol=1e-4)


def test_a_claim_can_select_the_sampled_harm_proxy() -> None:
    from empirical.verify.claim import parse_claim
    from tests.verify._claims import tiny_claim

    text = tiny_claim("sampled", budget_steps=10, attack_examples=4, evaluation_examples=4)
    chosen = parse_claim(text.replace("[harm]\n", '[harm]\nproxy = "sampled_harm"\n'))
    assert chosen.harm.proxy == "sampled_harm"
    built = chosen.harm.build("a refusal")
    assert isinstance(built, SampledHarm) and built.refusal == "a refusal"
    assert isinstance(parse_claim(text).harm.build(), ExactHarm)
    with pytest.raises(HftaInputError):
        parse_claim(text.replace("[harm]\n", '[harm]\nproxy = "sampled"\n'))


def test_a_sampled_harm_curve_gets_hoeffding_intervals() -> None:
    """The verifier's interval follows the recorded proxy: Hoeffding for ``sampled_harm``
    (a rate that is not a count), Clopper–Pearson for ``exact_harm`` (which refuses it)."""
    from empirical.verify.judge import harm_band

    trajectory = _harm_trajectory("sampled_harm", [0.1234, 0.4321])
    band = harm_band(trajectory, 0.05)
    width = math.sqrt(math.log(2 / 0.05) / (2 * 50))
    assert band.upper.values[0] == pytest.approx(0.1234 + width)
    with pytest.raises(HftaInputError, match="not a count"):
        harm_band(_harm_trajectory("exact_harm", [0.1234, 0.4321]), 0.05)


def _harm_trajectory(proxy: str, harm: list[float]) -> Trajectory:
    """A recorded harm curve on 50 prompts, measured by ``proxy``."""
    from empirical.measurement.trajectory import Environment, Evaluation, Timing

    n = 10
    return Trajectory(
        source="attack",
        config={"harm_proxy": proxy, "resolved": {"evaluation_examples": 50}},
        budget_steps=n,
        trainable_parameters=1,
        train_loss=[1.0] * n,
        learning_rate=[1e-3] * n,
        grad_norm=[1.0] * n,
        update_norm=[0.1] * n,
        distance_from_start=[0.0] * (n + 1),
        evaluations=[Evaluation(step=s, harm=h) for s, h in zip((0, n), harm, strict=True)],
        timing=Timing(wall_seconds=0, train_seconds=0, eval_seconds=0),
        environment=Environment(python="3", platform="test", device="cpu", dtype="float32"),
    )
