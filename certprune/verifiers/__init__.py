"""Bounds, attacks, branch and bound, SMT, and the audit orchestration (see DESIGN.md)."""
