"""Evaluation (report §5.1): multiple choice scored by log-likelihood, a cloze benchmark generated from the held-out
corpus, and a maths benchmark checked by reasoning-gym. Validation loss and bits per byte live in
``minillm.train.evaluate``."""

from minillm.eval.choice import ChoiceItem, option_logprobs, score_choices
from minillm.eval.cloze import cloze_benchmark, is_held_out, split_documents, word_counts
from minillm.eval.math import (HELD_OUT_SEED, MathItem, arithmetic_choice_benchmark, extract_answer, math_benchmark,
                               score_math, training_questions)

__all__ = [
    "ChoiceItem", "option_logprobs", "score_choices", "cloze_benchmark", "is_held_out", "split_documents",
    "word_counts", "HELD_OUT_SEED", "MathItem", "arithmetic_choice_benchmark", "extract_answer", "math_benchmark",
    "score_math", "training_questions",
]
