"""swapd configuration: llama-swap ``config.yaml`` files, loaded into frozen dataclasses.

``load_config`` reads a file and/or a ``--config-dir``; ``load_text`` a string (tests);
``load_demo`` the built-in demo. All raise ``ConfigError`` with every issue found, each as
``file:line:col: message``. See ``swapd.config.loader`` for the pipeline and for where swapd
differs from llama-swap on purpose.

This package imports no domain module: GGUF discovery, Docker nodes and recipes plug in as
``ConfigExtension``s (``swapd.extensions.standard()``), passed as ``extensions=``.
"""

from swapd.config.command import parse_command
from swapd.config.demo import load_demo
from swapd.config.extension import ConfigExtension
from swapd.config.loader import load_config, load_text
from swapd.config.model import (
    DEFAULT_GROUP,
    Config,
    Filters,
    GroupConfig,
    ModelConfig,
    Timeouts,
)

__all__ = [
    "DEFAULT_GROUP",
    "Config",
    "ConfigExtension",
    "Filters",
    "GroupConfig",
    "ModelConfig",
    "Timeouts",
    "load_config",
    "load_demo",
    "load_text",
    "parse_command",
]
