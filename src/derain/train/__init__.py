"""Training engine: typed YAML configs, one loop with exact resume, schedules and EMA.

``train_from_config("configs/rain100l_stage1.yaml", ["optim.lr=5e-4"], time_budget_minutes=60)``
"""
from derain.train.config import TrainConfig, load_config
from derain.train.loop import Trainer, train_from_config

__all__ = ["TrainConfig", "Trainer", "load_config", "train_from_config"]
