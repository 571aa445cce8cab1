"""Option choices shared by several `convfeat` sub-commands."""
from __future__ import annotations

from enum import Enum


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
