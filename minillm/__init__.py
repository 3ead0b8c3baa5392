"""minillm: the Llama 3 report ("The Llama 3 Herd of Models", 2024) rebuilt small, tested and measured.

Every chapter of the book imports this package; see ARCHITECTURE.md for the map from report sections to modules.
"""

from minillm.config import ModelConfig, RopeScaling
from minillm.chapters import setup
from minillm.device import DeviceChoice, RunMode, pick_device, seed_everything
from minillm.generate import generate
from minillm.model import KVCache, Llama
from minillm.model.load import load_pretrained, load_smollm2, save_pretrained

__version__ = "0.1.0"

__all__ = [
    "ModelConfig",
    "RopeScaling",
    "DeviceChoice",
    "RunMode",
    "pick_device",
    "seed_everything",
    "setup",
    "Llama",
    "KVCache",
    "generate",
    "load_pretrained",
    "load_smollm2",
    "save_pretrained",
]
