"""What the headline total is, said in words: its label in English and Chinese, the convention as one line, and
the AI share (智能算力占比) beside the national target.

Pure: works on a convention and per-tier headline figures handed to it. The headline is a sum of each tier's
peak in its own precision (general and edge fp32, AI fp16, HPC fp64 by default), as China's national compute
statistics publish it; every answer that shows the total must say so, and this module is the one place that
words it. It must not read the database or the settings itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from census_agent.models import Precision, Tier

TIER_EN = {Tier.GENERAL: "general", Tier.AI: "AI", Tier.HPC: "HPC", Tier.EDGE: "edge"}
TIER_ZH = {Tier.GENERAL: "通用算力", Tier.AI: "智能算力", Tier.HPC: "超算算力", Tier.EDGE: "边缘算力"}
DEFAULT_AI_SHARE_TARGET = 0.35
AI_SHARE_TARGET_SOURCE = (
    "《算力基础设施高质量发展行动计划》 (MIIT and five other departments, October 2023): 智能算力占比 35 % by 2025"
)


def convention_text(convention: Mapping[Tier, Precision]) -> str:
    """The convention as one line, tier order: ``general fp32 + ai fp16 + hpc fp64 + edge fp32``."""
    return " + ".join(f"{t.value} {convention[t].value}" for t in Tier)


def headline_label_en(convention: Mapping[Tier, Precision]) -> str:
    """The headline's label in English."""
    parts = " + ".join(f"{TIER_EN[t]} {convention[t].value.upper()}" for t in Tier)
    return f"Total compute: each tier's peak in its own precision, added up ({parts})"


def headline_label_zh(convention: Mapping[Tier, Precision]) -> str:
    """The headline's label in Chinese (the national statistics' terms)."""
    parts = " + ".join(f"{TIER_ZH[t]} {convention[t].value.upper()}" for t in Tier)
    return f"算力总规模：各类算力按各自精度的峰值相加（{parts}）"


def ai_share(by_tier_headline: Mapping[str, float], total: float) -> float | None:
    """The AI tier's headline over the headline total (智能算力占比); None when the total is 0."""
    return by_tier_headline.get(Tier.AI.value, 0.0) / total if total else None


def headline_extras(
    convention: Mapping[Tier, Precision], by_tier_headline: Mapping[str, float], total: float, target: float
) -> dict[str, Any]:
    """The fields the census document's ``headline`` carries beside the figure: labels, convention, AI share."""
    return {
        "label_en": headline_label_en(convention),
        "label_zh": headline_label_zh(convention),
        "convention_text": convention_text(convention),
        "ai_share": ai_share(by_tier_headline, total),
        "ai_share_target": target,
        "ai_share_target_source": AI_SHARE_TARGET_SOURCE,
    }
