"""Validation rules, defined once as data and evaluated by every engine."""

from shopstream.validation.rules import (
    FILE_REJECTIONS,
    ROW_RULES,
    STRUCTURAL_RULES,
    FileRejection,
    Rule,
    RuleParams,
    render_rules,
)

__all__ = [
    "FILE_REJECTIONS",
    "ROW_RULES",
    "STRUCTURAL_RULES",
    "FileRejection",
    "Rule",
    "RuleParams",
    "render_rules",
]
