"""Post-training (report §4): reward model, SFT, rejection sampling, DPO, RLOO and data quality control, in rounds.

- ``data.py``: instructions, dialogues and ranked preferences (edited > chosen > rejected) from reasoning-gym problems;
- ``instructions.py``: checkable format instructions, planted annotator noise and rule-based cleaning (§4.2.3);
- ``sft.py``: chats → ``(input_ids, loss_mask)`` with prompt and headers masked; packed fine-tuning (§4.1.3);
- ``reward_model.py``: ``RewardModel`` (Llama trunk + scalar head), Bradley-Terry ``reward_loss``, ranked rows (§4.1.2);
- ``rejection_sampling.py``: K samples per prompt through ``LLMEngine`` (shared prompt blocks), best kept (§4.2.1);
- ``dpo.py``: ``dpo_loss`` (Rafailov et al. eq. 7) with formatting tokens masked and an NLL term (§4.1.4);
- ``rloo.py``: ``rloo_advantages`` and a REINFORCE step with a KL-penalised reward (Ahmadian et al. 2024);
- ``quality_control.py``: topics, RM top quartile, difficulty, semantic dedup with all-MiniLM-L6-v2 (§4.2.3);
- ``loop.py``: ``post_train_round`` / ``run_post_training`` with held-out scores, Wilson intervals and paired tests.
"""

from minillm.post.data import (DataConfig, PostData, PreferenceTriple, build_post_data, canonical_response, dialogue,
                               eval_prompt, extract_final_answer, instruction_chat, score_response,
                               synthetic_preference)
from minillm.post.dpo import DPOConfig, dpo_loss, dpo_objective, frozen_copy, preference_batch, sequence_logps, \
    train_dpo
from minillm.eval.stats import binomial_p, paired_comparison, wilson_interval   # the paired tests every stage uses
from minillm.post.loop import (PostTrainResult, PostTrainSpec, evaluate_accuracy, post_train_round,
                               post_training_spec, run_post_training)
from minillm.post.quality_control import (QualityConfig, embed_texts, load_embedder, pass_rate_difficulty,
                                          select_data, semantic_dedup, top_fraction, topic_of, train_topic_classifier)
from minillm.post.rejection_sampling import RejectionConfig, RejectionResult, rejection_sample, sample_completions
from minillm.post.reward_model import (RewardConfig, RewardModel, collate_rows, pair_accuracy, ranked_pair_loss,
                                       ranked_row, reward_loss, reward_scores, train_reward_model)
from minillm.post.rloo import RLOOConfig, kl_penalised_rewards, rloo_advantages, rloo_step, train_rloo
from minillm.post.sft import ChatExample, SFTBatch, SFTConfig, chat_example, pack_examples, response_example, \
    sft_loss, train_sft

__all__ = [
    "DataConfig", "PostData", "PreferenceTriple", "build_post_data", "canonical_response", "dialogue", "eval_prompt",
    "extract_final_answer", "instruction_chat", "score_response", "synthetic_preference",
    "DPOConfig", "dpo_loss", "dpo_objective", "frozen_copy", "preference_batch", "sequence_logps", "train_dpo",
    "PostTrainResult", "PostTrainSpec", "binomial_p", "evaluate_accuracy", "paired_comparison", "post_train_round",
    "post_training_spec", "run_post_training", "wilson_interval",
    "QualityConfig", "embed_texts", "load_embedder", "pass_rate_difficulty", "select_data", "semantic_dedup",
    "top_fraction", "topic_of", "train_topic_classifier",
    "RejectionConfig", "RejectionResult", "rejection_sample", "sample_completions",
    "RewardConfig", "RewardModel", "collate_rows", "pair_accuracy", "ranked_pair_loss", "ranked_row", "reward_loss",
    "reward_scores", "train_reward_model",
    "RLOOConfig", "kl_penalised_rewards", "rloo_advantages", "rloo_step", "train_rloo",
    "ChatExample", "SFTBatch", "SFTConfig", "chat_example", "pack_examples", "response_example", "sft_loss",
    "train_sft",
]
