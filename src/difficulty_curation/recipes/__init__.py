"""Thin recipes on top of curated data: SFT with TRL + PEFT, and evaluation with the scoring verifiers."""
