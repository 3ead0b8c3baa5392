"""The base model recipe and annealing, on a tiny model and a few synthetic documents (the real build runs in the
chapter): deterministic training, the artifact round trip, the annealing LR shape and checkpoint averaging."""

import importlib
import json

import pytest
import torch
from safetensors.torch import load_file

import minillm.data.corpus
import minillm.tokenizer
from minillm.eval import math_benchmark, score_math
from minillm.tokenizer import train_bpe
from minillm.train import (AnnealSpec, BaseModelSpec, anneal, annealing_mix, base_model, base_model_spec, evaluate,
                           evaluate_base, train_base)
from minillm.train.packing import pack_texts
from minillm.train.pretrain import EASY_ARITHMETIC, benchmark_suite, split_corpus

WORDS = [f"{a}{b}{c}{d}" for a in "bcdfg" for b in "aeiou" for c in "lmnr" for d in "aeo"][:240]
SPEC = BaseModelSpec(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, seq_len=32, batch_size=4, steps=6,
                     peak_lr=1e-2, warmup_steps=2, final_lr=1e-3, held_out_fraction=0.2, eval_batches=2,
                     n_cloze=4, n_math=3)


def _docs(n=40):
    g = torch.Generator().manual_seed(0)
    docs = []
    for i in range(n):
        if i % 4 == 0:                                                      # maths pages, in the annealing set
            a, b = (int(x) for x in torch.randint(1, 9, (2,), generator=g))
            text = f"Question: Calculate {a} + {b}.\nAnswer: {a + b}"
        else:
            words = [WORDS[j] for j in torch.randint(0, len(WORDS), (40,), generator=g).tolist()]
            text = " ".join("The " + " ".join(words[k:k + 10]) + "." for k in range(0, 40, 10))
        docs.append({"id": i, "text": text, "annealing": i % 4 == 0})
    return docs


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe([d["text"] for d in _docs()], vocab_size=400)


@pytest.fixture(scope="module")
def trained(tokenizer):
    return train_base(SPEC, tokenizer, _docs(), progress=False)


def test_base_training_learns_and_reports_every_metric(trained):
    model, metrics, history = trained
    assert metrics["last_loss"] < metrics["first_loss"] and len(history) == SPEC.steps
    assert metrics["train_tokens"] == SPEC.steps * SPEC.batch_size * SPEC.seq_len
    assert metrics["val"]["bpb"] > 0 and metrics["unigram_loss"] > 0
    assert metrics["cloze"]["n"] == 4 and metrics["cloze"]["chance"] == 0.25
    assert metrics["arith_mc"]["n"] == 3 and metrics["math"]["n"] == 3
    assert metrics["train_docs"] + metrics["held_out_docs"] == 40


def test_base_metrics_are_the_trained_model_scored_on_the_held_out_split(tokenizer, trained):
    model, metrics, _ = trained
    train_docs, held_docs = split_corpus(_docs(), SPEC)
    suite = benchmark_suite(train_docs, held_docs, SPEC.n_cloze, SPEC.n_math, SPEC.seed)
    val = pack_texts([d["text"] for d in held_docs], tokenizer)
    again = evaluate_base(model, tokenizer, val, suite, SPEC.seq_len, SPEC.batch_size, SPEC.eval_batches)
    assert metrics["val"]["loss"] == pytest.approx(again["val"]["loss"], rel=1e-6)
    for name in ("cloze", "arith_mc", "math"):
        assert metrics[name] == again[name], name


def test_the_math_score_is_the_share_of_planted_right_answers(tokenizer, trained, monkeypatch):
    items = math_benchmark(3, task_config=EASY_ARITHMETIC)
    written = [f" {items[0].answer}\nQuestion: next", f" {int(items[1].answer) + 1}", f" #### {items[2].answer}"]
    module = importlib.import_module("minillm.generate")               # (minillm.generate is also the function)
    monkeypatch.setattr(module, "generate",                             # what the model "wrote": right, wrong, right
                        lambda model, prompts, n, stop_tokens: [tokenizer.encode(w) for w in written])
    result = score_math(trained[0], tokenizer, items)
    assert result["score"] == pytest.approx(2 / 3) and result["exact"] == pytest.approx(2 / 3) and result["n"] == 3
    assert [e["score"] for e in result["examples"]] == [1.0, 0.0, 1.0]


def test_base_model_artifact_is_deterministic_built_once_then_loaded(tokenizer, trained, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus" / "fake"
    corpus.mkdir(parents=True)
    with open(corpus / "corpus.jsonl", "w") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in _docs())
    monkeypatch.setattr(minillm.tokenizer, "book_tokenizer", lambda root=None: tokenizer)
    monkeypatch.setattr(minillm.data.corpus, "curated_corpus", lambda mode, root=None, progress=True: corpus)
    model, tok, metrics = base_model("fast", root=tmp_path, progress=False, spec=SPEC)     # trains
    assert tok is tokenizer and len([f for f in (tmp_path / "base_model").iterdir() if f.is_dir()]) == 1
    again, _, metrics_again = base_model("fast", root=tmp_path, progress=False, spec=SPEC)     # loads
    assert metrics_again == metrics
    reference, reference_metrics, _ = trained                               # the same recipe trained in-process
    for name, w in reference.state_dict().items():                          # bit-identical: training is deterministic
        assert torch.equal(model.state_dict()[name], w) and torch.equal(again.state_dict()[name], w), name
    assert metrics["val"] == reference_metrics["val"] and metrics["cloze"] == reference_metrics["cloze"]
    assert model.cfg.tie_embeddings and model.cfg.dim == SPEC.dim


def test_annealing_mix_upsamples_the_annealing_set_by_tokens(tokenizer):
    docs = _docs()
    count = lambda ds: sum(len(tokenizer.encode(d["text"])) for d in ds)                # noqa: E731
    flagged = [d for d in docs if d["annealing"]]
    mix = annealing_mix(docs, 0.5, tokenizer)
    assert mix[:10] == flagged and all(not d["annealing"] for d in mix[10:])           # every annealing doc first
    general = count(mix[10:])                                                           # then general text until
    assert count(flagged) <= general < count(flagged) + max(count([d]) for d in mix[10:])   # it holds half the tokens
    assert annealing_mix(docs, 0.0, tokenizer) == flagged
    own = [{"id": "x", "text": "Question: Calculate 1 + 1.\nAnswer: 2"}]
    assert annealing_mix(docs, 0.0, tokenizer, high_quality=own) == own
    with pytest.raises(ValueError, match="annealing=True"):
        annealing_mix([dict(d, annealing=False) for d in docs], 0.5, tokenizer)


def test_arithmetic_drills_are_right_unless_planted_wrong_and_skip_excluded_questions():
    import reasoning_gym

    from minillm.data.annealing import arithmetic_drills

    good = arithmetic_drills(5, per_doc=4, seed=3)
    assert len(good) == 5 and all(d["text"].count("Question: ") == 4 for d in good)
    pairs = [(q.removeprefix("Question: "), a.removeprefix("Answer: ")) for d in good
             for q, a in zip(d["text"].split("\n")[::2], d["text"].split("\n")[1::2])]
    score = reasoning_gym.get_score_answer_fn("basic_arithmetic")
    entries = {e["question"].strip(): e for e in reasoning_gym.create_dataset(
        "basic_arithmetic", size=500, seed=3, min_terms=2, max_terms=2, min_digits=1, max_digits=1)}
    assert all(score(a, entries[q]) == 1.0 for q, a in pairs)                          # checked by reasoning-gym
    bad = arithmetic_drills(5, per_doc=4, seed=3, wrong_share=1.0)
    wrong = [l for d in bad for l in d["text"].split("\n")[1::2]]
    assert all(w != f"Answer: {a}" for w, (_, a) in zip(wrong, pairs))                  # every answer replaced
    skip = {pairs[0][0], pairs[5][0]}
    assert not skip & {q for d in arithmetic_drills(5, 4, seed=3, exclude=skip) for q in
                       (l.removeprefix("Question: ") for l in d["text"].split("\n")[::2])}
    assert arithmetic_drills(5, 4, seed=3) == good                                      # deterministic
    answers = {}                                                                        # half the questions wrong,
    for d in arithmetic_drills(10, 20, seed=3, wrong_share=0.5):                        # the same way each time
        lines = d["text"].split("\n")
        for q, a in zip(lines[::2], lines[1::2]):
            answers.setdefault(q.removeprefix("Question: "), set()).add(a.removeprefix("Answer: "))
    assert all(len(a) == 1 for a in answers.values())
    wrong = [q for q, a in answers.items() if score(next(iter(a)), entries[q]) < 1]     # (the drills draw
    assert 0.3 < len(wrong) / len(answers) < 0.7                                        # 2 × 200 + 100 problems)
    with pytest.raises(ValueError, match="wrong_share"):
        arithmetic_drills(2, wrong_share=1.5)


def test_the_annealing_probe_scores_a_control_and_each_candidate_from_the_same_start(tokenizer, trained):
    import numpy as np

    from minillm.train import annealing_probe

    model = trained[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    docs = _docs()
    general = [d for d in docs if not d["annealing"]]
    seen = []

    def score(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return np.array([float(sum(p.detach().sum() for p in m.parameters()))])

    spec = AnnealSpec(steps=3, start_lr=1e-3, batch_size=4, seq_len=32, checkpoint_every=1, average_last=1)
    out = annealing_probe(model, tokenizer, general, {"maths": [d for d in docs if d["annealing"]]}, spec, score,
                          progress=False)
    assert list(out["scores"]) == ["before", "control", "maths"] and out["mix_tokens"]["maths"] > 0
    assert all(torch.equal(seen[0][k], v) for k, v in before.items())                  # "before" is the base model
    assert not torch.equal(seen[1]["norm.weight"], seen[2]["norm.weight"])              # the two runs differ
    assert all(torch.equal(w, before[k]) for k, w in model.state_dict().items())       # the base stays untouched
    with pytest.raises(ValueError, match="control"):
        annealing_probe(model, tokenizer, general, {"control": general}, spec, score, progress=False)


def test_annealing_takes_the_lr_linearly_to_zero_and_averages_the_last_checkpoints(tokenizer, trained, tmp_path):
    model = trained[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    val = pack_texts([d["text"] for d in _docs()[:8]], tokenizer)
    spec = AnnealSpec(steps=6, start_lr=1e-3, batch_size=4, seq_len=32, general_share=0.5, checkpoint_every=2,
                      average_last=2)
    averaged, metrics = anneal(model, tokenizer, _docs(), spec, lambda m: evaluate(m, val, 32, 2),
                               run_dir=tmp_path, progress=False)
    lrs = [row["lr"] for row in metrics["history"]]
    assert lrs == pytest.approx([1e-3 * (1 - s / 6) for s in range(6)])   # 1e-3 → 0 over the 6 steps
    assert metrics["averaged_steps"] == [4, 6]
    ckpts = [load_file(str(tmp_path / f"step_{s:06d}" / "model.safetensors")) for s in (4, 6)]
    for name, w in load_file(str(tmp_path / "averaged.safetensors")).items():
        torch.testing.assert_close(w, (ckpts[0][name] + ckpts[1][name]) / 2, rtol=0, atol=1e-7)
    got = dict(averaged.named_parameters())
    torch.testing.assert_close(got["layers.0.feed_forward.w2.weight"],
                               (ckpts[0]["layers.0.feed_forward.w2.weight"] + ckpts[1]["layers.0.feed_forward.w2.weight"]) / 2)
    for name, w in model.state_dict().items():                              # the base model is left untouched
        assert torch.equal(w, before[name]), name
    assert set(metrics) >= {"before", "last", "averaged"} and metrics["annealing_docs"] == 10
    assert metrics["before"]["loss"] > 0 and metrics["averaged"]["loss"] > 0


def test_specs_validate_and_scale_with_the_run_mode():
    fast, book = base_model_spec("fast"), base_model_spec("book")
    tokens = lambda s: s.steps * s.batch_size * s.seq_len                                  # noqa: E731
    assert tokens(book) > tokens(fast) and book.dim > fast.dim
    with pytest.raises(ValueError, match="held_out_fraction"):
        BaseModelSpec(held_out_fraction=0.0)
    with pytest.raises(ValueError, match="average_last"):
        AnnealSpec(steps=4, checkpoint_every=2, average_last=3)
