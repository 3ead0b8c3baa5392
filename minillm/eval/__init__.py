"""Evaluation (report §5.1): multiple choice scored by log-likelihood (cloze and MMLU formats), a cloze benchmark
generated from the held-out corpus, a maths benchmark checked by reasoning-gym, IFEval-style verifiable instructions,
and 8-gram contamination checks. Validation loss and bits per byte live in ``minillm.train.evaluate``."""

from minillm.eval.choice import ChoiceItem, option_logprobs, score_choices
from minillm.eval.cloze import cloze_benchmark, cloze_distractors, is_held_out, split_documents, word_counts
from minillm.eval.contamination import (ContaminationReport, NgramIndex, contamination_report, ngram_hashes,
                                        performance_gain, word_ids)
from minillm.eval.ifeval import IFItem, ifeval_prompts, ifeval_responses, score_ifeval
from minillm.eval.mmlu import add_options, as_mmlu, mmlu_block
from minillm.eval.stats import binomial_p, paired_comparison, paired_difference, wilson_interval
from minillm.eval.math import (HELD_OUT_SEED, MathItem, arithmetic_choice_benchmark, extract_answer, math_benchmark,
                               score_math, training_questions)

__all__ = [
    "ChoiceItem", "option_logprobs", "score_choices", "cloze_benchmark", "is_held_out", "split_documents",
    "word_counts", "cloze_distractors", "add_options", "HELD_OUT_SEED", "MathItem", "arithmetic_choice_benchmark",
    "extract_answer", "math_benchmark",
    "score_math", "training_questions", "ContaminationReport", "NgramIndex", "contamination_report", "ngram_hashes",
    "performance_gain", "word_ids", "IFItem", "ifeval_prompts", "ifeval_responses", "score_ifeval", "as_mmlu",
    "mmlu_block", "binomial_p", "paired_comparison", "paired_difference", "wilson_interval",
]
