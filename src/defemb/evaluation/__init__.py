"""Evaluation harness (METHOD §4, §10): every evaluator writes one `result.json` per (model, seed).

The contract all evaluators share lives in `records.py`; `results.py` merges the records into tables.
"""
