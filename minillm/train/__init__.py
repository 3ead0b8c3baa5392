"""Pre-training (report §3.4): packing with document ids, LR and batch schedules, AdamW, the trainer loop with
exact-resume checkpoints and data parallelism, evaluation (loss, bits per byte) and checkpoint averaging; the book's
base model (``base_model``) and its annealing (``annealed_model``)."""

from minillm.train.annealing import (AnnealSpec, anneal, anneal_spec, annealed_model, annealing_mix, annealing_probe,
                                     mix_by_tokens)
from minillm.train.pretrain import (BaseModelSpec, base_model, base_model_folder, base_model_spec, evaluate_base,
                                      train_base)
from minillm.train.checkpoint import (CheckpointError, average_checkpoints, checkpoint_dir, latest_checkpoint,
                                      list_checkpoints, load_checkpoint, save_checkpoint)
from minillm.train.evaluate import evaluate, token_byte_lengths, token_losses, window_losses
from minillm.train.optim import OptimConfig, autocast, clip_gradients, make_optimizer, param_groups
from minillm.train.packing import IGNORE, Batch, PackedData, StreamLoader, batch_at, pack_documents, pack_texts
from minillm.train.schedules import BatchRamp, LRSchedule, RampStage
from minillm.train.trainer import TrainConfig, Trainer, init_distributed

__all__ = [
    "AnnealSpec", "anneal", "anneal_spec", "annealed_model", "annealing_mix", "annealing_probe", "mix_by_tokens",
    "BaseModelSpec", "base_model",
    "base_model_folder", "base_model_spec", "evaluate_base", "train_base",
    "CheckpointError", "average_checkpoints", "checkpoint_dir", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint", "evaluate",
    "token_byte_lengths", "token_losses", "window_losses", "OptimConfig", "autocast", "clip_gradients", "make_optimizer",
    "param_groups", "IGNORE", "Batch", "PackedData", "StreamLoader", "batch_at", "pack_documents", "pack_texts",
    "BatchRamp", "LRSchedule", "RampStage", "TrainConfig", "Trainer", "init_distributed",
]
